//! dfl train: fitting a DF or LIAE autoencoder to a src and a dst faceset; for now the sample
//! pipeline that feeds it.

pub mod sampler;

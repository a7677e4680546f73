//! The SAEHD models, their losses and the optimizer.

pub mod loss;
pub mod optim;

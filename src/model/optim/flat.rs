//! Flat parameter and gradient buffers: every trainable variable, and its `.grad()`, becomes a
//! view into one contiguous f32 tensor, so an optimizer step runs a handful of kernels over all
//! parameters at once instead of several per tensor (tch 0.26 exposes no `_foreach_` ops).
//!
//! How the binding works:
//! - Parameters: `Tensor::set_data` points each variable's storage at its slice of the flat
//!   buffer (what apex and DeepSpeed do with `p.data = flat[a:b].view_as(p)`). The variable keeps
//!   its identity, `requires_grad` and autograd node, so modules and the `VarStore` see nothing.
//!   `VarStore::load` (same dtype), `VarStore::copy` and `copy_` write into the existing storage,
//!   so they keep the binding.
//! - Gradients: the gradient autograd allocates on the first backward is re-pointed at its slice
//!   of the flat gradient buffer the same way (`p.grad()` shares the gradient's storage handle,
//!   so `p.grad().set_data(..)` moves the real gradient). Later backwards add into it in place:
//!   libtorch's AccumulateGrad accumulates into an existing gradient when backward runs without
//!   `create_graph`.
//! - Anything that swaps a variable's storage (`VarStore::set_kind`/`half`/`set_device`, a load
//!   from a file in another dtype, a backward with `create_graph`) breaks the binding.
//!   [`FlatParams::sync`] compares data pointers before every step (no kernels), copies moved
//!   values back into the buffers and re-binds them; a changed shape, dtype or device is an error.
//! - Memory format: a variable stored channels-last (`model::layout`) gets a slice in its own
//!   memory order and a permuted view, so binding keeps its strides and the gradients autograd
//!   makes in the same format are adopted without a transpose.
//! - One optimizer per set of variables: two optimizers over the same variables would keep
//!   stealing the binding from each other (correct, but every step copies).

use tch::{Device, Kind, Tensor};

use super::OptimError;
use crate::model::layout;

/// The only parameter dtype the flat buffers hold.
const FLAT_KIND: Kind = Kind::Float;

/// One variable and where it lives in the flat buffers.
struct Slot {
    /// The variable's name, e.g. `encoder.down.0.conv.weight`.
    name: String,
    /// A shallow clone of the variable: same storage handle as the `VarStore`'s.
    var: Tensor,
    /// The variable's shape.
    shape: Vec<i64>,
    /// First element in the flat buffers.
    offset: i64,
    /// Number of elements.
    numel: i64,
    /// The variable is a 4-D tensor stored channels-last: its slice holds `[O, H, W, I]` in
    /// memory order, so the view keeps the variable's strides.
    channels_last: bool,
}

impl Slot {
    /// This slot's part of a flat buffer, shaped like the variable: `[P]` → `[*shape]`, with
    /// the variable's memory format.
    fn view(&self, flat: &Tensor) -> Tensor {
        let slice = flat.narrow(0, self.offset, self.numel);
        match (self.channels_last, self.shape.as_slice()) {
            (true, &[o, i, h, w]) => slice.view([o, h, w, i]).permute([0, 3, 1, 2]), // [O, I, H, W]
            _ => slice.view(self.shape.as_slice()),                                  // [*shape]
        }
    }

    /// The variable's values in this slot's memory order, flattened: `[*shape]` → `[numel]`.
    fn flatten(&self, var: &Tensor) -> Tensor {
        if self.channels_last {
            var.detach().permute([0, 2, 3, 1]).reshape([-1])
        } else {
            var.detach().reshape([-1])
        }
    }

    /// Whether `xs` is stored at this slot's place in the flat buffer starting at `base`.
    fn is_bound(&self, xs: &Tensor, base: usize) -> bool {
        let elem = FLAT_KIND.elt_size_in_bytes();
        self.numel == 0 || xs.data_ptr() as usize == base + self.offset as usize * elem
    }

    /// A description of the slot's expected layout for error messages.
    fn describe(&self, device: Device) -> String {
        format!("{:?} {FLAT_KIND:?} on {device:?}", self.shape)
    }
}

/// Variables bound to one flat parameter buffer and one flat gradient buffer.
pub(super) struct FlatParams {
    /// The variables, sorted by name; this is the buffer layout.
    slots: Vec<Slot>,
    /// All parameters, concatenated in slot order: `[P]` f32.
    params: Tensor,
    /// Their gradients, same layout: `[P]` f32.
    grads: Tensor,
}

impl FlatParams {
    /// Copies the variables into fresh flat buffers and binds them (and existing gradients).
    ///
    /// # Errors
    /// No variables, a duplicate name, a variable that is not a trainable f32 tensor, or
    /// variables on different devices.
    pub(super) fn new(mut vars: Vec<(String, Tensor)>) -> Result<Self, OptimError> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        check_variables(&vars)?;
        let mut offset = 0;
        let mut slots = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let (shape, numel) = (var.size(), var.numel() as i64);
            let channels_last = shape.len() == 4 && layout::is_channels_last(&var);
            slots.push(Slot { name, var, shape, offset, numel, channels_last });
            offset += numel;
        }
        tch::no_grad(|| {
            let pieces: Vec<Tensor> = slots.iter().map(|s| s.flatten(&s.var)).collect();
            let params = Tensor::f_cat(&pieces, 0)?; // [P]
            let grads = params.f_zeros_like()?; // [P]
            let mut flat = Self { slots, params, grads };
            for i in 0..flat.slots.len() {
                flat.bind_param(i)?;
            }
            flat.sync_grads()?;
            Ok(flat)
        })
    }

    /// The total number of parameter elements, P.
    pub(super) fn numel(&self) -> i64 {
        self.params.size()[0]
    }

    /// The flat parameter buffer, `[P]` f32.
    pub(super) fn params(&self) -> &Tensor {
        &self.params
    }

    /// The flat parameter buffer, `[P]` f32; writing to it updates every variable.
    pub(super) fn params_mut(&mut self) -> &mut Tensor {
        &mut self.params
    }

    /// The flat gradient buffer, `[P]` f32, in the same layout.
    pub(super) fn grads(&self) -> &Tensor {
        &self.grads
    }

    /// The flat gradient buffer, `[P]` f32, in the same layout.
    pub(super) fn grads_mut(&mut self) -> &mut Tensor {
        &mut self.grads
    }

    /// Splits a `[P]` buffer laid out like the parameters into named views of their shapes.
    pub(super) fn named_views(&self, flat: &Tensor, prefix: &str) -> Vec<(String, Tensor)> {
        self.slots.iter().map(|s| (format!("{prefix}{}", s.name), s.view(flat))).collect()
    }

    /// Makes the flat buffers current: re-binds moved parameters and adopts new gradients.
    ///
    /// A variable without a gradient (it took no part in the loss) counts as a zero gradient.
    ///
    /// # Errors
    /// A variable whose shape, dtype or device changed since [`FlatParams::new`].
    pub(super) fn sync(&mut self) -> Result<(), OptimError> {
        tch::no_grad(|| {
            let base = self.params.data_ptr() as usize;
            for i in 0..self.slots.len() {
                if !self.slots[i].is_bound(&self.slots[i].var, base) {
                    self.bind_param(i)?;
                }
            }
            self.sync_grads()
        })
    }

    /// Zeroes every gradient: the flat buffer, plus any gradient not bound to it yet.
    pub(super) fn zero_grads(&mut self) {
        tch::no_grad(|| {
            let _ = self.grads.zero_();
            let base = self.grads.data_ptr() as usize;
            for slot in &self.slots {
                let mut grad = slot.var.grad();
                if grad.defined() && !slot.is_bound(&grad, base) {
                    let _ = grad.zero_();
                }
            }
        })
    }

    /// Copies variable `i`'s values into its slice of the parameter buffer and points it there.
    fn bind_param(&mut self, i: usize) -> Result<(), OptimError> {
        let device = self.params.device();
        let slot = &mut self.slots[i];
        let var = &slot.var;
        if var.size() != slot.shape || var.kind() != FLAT_KIND || var.device() != device {
            return Err(OptimError::ParameterChanged {
                name: slot.name.clone(),
                expected: slot.describe(device),
                got: format!("{:?} {:?} on {:?}", var.size(), var.kind(), var.device()),
            });
        }
        let mut view = slot.view(&self.params);
        view.f_copy_(var)?;
        slot.var.f_set_data(&view)?;
        Ok(())
    }

    /// Adopts gradients autograd allocated outside the flat buffer; zeroes missing ones.
    fn sync_grads(&mut self) -> Result<(), OptimError> {
        let base = self.grads.data_ptr() as usize;
        for slot in &self.slots {
            let mut grad = slot.var.grad();
            let mut view = slot.view(&self.grads);
            if !grad.defined() {
                let _ = view.f_zero_()?;
            } else if !slot.is_bound(&grad, base) {
                view.f_copy_(&grad)?;
                grad.f_set_data(&view)?;
            }
        }
        Ok(())
    }
}

/// Checks that the sorted variables are non-empty, uniquely named, trainable f32 tensors on one
/// device.
fn check_variables(vars: &[(String, Tensor)]) -> Result<(), OptimError> {
    let Some((_, first)) = vars.first() else {
        return Err(OptimError::NoParameters);
    };
    let device = first.device();
    for (i, (name, var)) in vars.iter().enumerate() {
        if i > 0 && vars[i - 1].0 == *name {
            return Err(OptimError::DuplicateName { name: name.clone() });
        }
        if var.kind() != FLAT_KIND || var.device() != device {
            return Err(OptimError::UnsupportedParameter {
                name: name.clone(),
                got: format!("{:?} on {:?}", var.kind(), var.device()),
                expected: format!("{FLAT_KIND:?} on {device:?}"),
            });
        }
        if !var.requires_grad() {
            return Err(OptimError::NotTrainable { name: name.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    /// A VarStore with two small linear layers, as `Optimizer::new` would get them.
    fn store() -> (nn::VarStore, nn::Linear, nn::Linear) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let fc1 = nn::linear(vs.root() / "fc1", 4, 3, Default::default());
        let fc2 = nn::linear(vs.root() / "fc2", 3, 2, Default::default());
        (vs, fc1, fc2)
    }

    fn named(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    fn backward(fc1: &nn::Linear, fc2: &nn::Linear) {
        use tch::nn::Module;
        let xs = Tensor::ones([5, 4], (Kind::Float, Device::Cpu));
        fc2.forward(&fc1.forward(&xs).relu()).square().sum(Kind::Float).backward();
    }

    /// Whether every variable and every defined gradient is bound to the flat buffers.
    fn all_bound(flat: &FlatParams) -> bool {
        let (pb, gb) = (flat.params.data_ptr() as usize, flat.grads.data_ptr() as usize);
        flat.slots.iter().all(|s| {
            let grad = s.var.grad();
            s.is_bound(&s.var, pb) && (!grad.defined() || s.is_bound(&grad, gb))
        })
    }

    #[test]
    fn variables_and_gradients_become_views_of_the_flat_buffers() {
        let (vs, fc1, fc2) = store();
        let before: Vec<Tensor> = named(&vs).iter().map(|(_, t)| t.copy()).collect();
        let mut flat = FlatParams::new(named(&vs)).expect("valid variables");
        assert_eq!(flat.numel(), 4 * 3 + 3 + 3 * 2 + 2);
        for ((_, var), old) in named(&vs).iter().zip(&before) {
            assert!(var.equal(old), "binding must keep the values");
        }
        backward(&fc1, &fc2);
        flat.sync().expect("nothing changed");
        assert!(all_bound(&flat));
        // The second backward accumulates in place into the flat buffer.
        let once = flat.grads.copy();
        backward(&fc1, &fc2);
        assert!(all_bound(&flat), "AccumulateGrad must add in place");
        assert!(flat.grads.allclose(&(&once * 2.0), 1e-6, 1e-6, false));
        flat.zero_grads();
        assert_eq!(fc1.ws.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn writes_to_the_flat_buffer_reach_the_var_store() {
        let (vs, ..) = store();
        let mut flat = FlatParams::new(named(&vs)).expect("valid variables");
        tch::no_grad(|| {
            let _ = flat.params_mut().fill_(0.25);
        });
        for (name, var) in named(&vs) {
            assert_eq!(var.min().double_value(&[]), 0.25, "{name}");
        }
    }

    #[test]
    fn var_store_load_keeps_the_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        let (mut vs, fc1, fc2) = store();
        let mut flat = FlatParams::new(named(&vs)).expect("valid variables");
        backward(&fc1, &fc2);
        flat.sync().expect("nothing changed");
        vs.save(&path).expect("save");
        let saved = flat.params.copy();
        tch::no_grad(|| {
            let _ = flat.params_mut().fill_(-1.0);
        });
        vs.load(&path).expect("load");
        assert!(all_bound(&flat), "VarStore::load must copy into the views");
        assert!(flat.params.equal(&saved));
    }

    #[test]
    fn replaced_storage_is_copied_back_and_rebound() {
        let (vs, ..) = store();
        let mut flat = FlatParams::new(named(&vs)).expect("valid variables");
        let mut ws = vs.variables()["fc1.weight"].shallow_clone();
        ws.set_data(&Tensor::full([3, 4], 0.5, (Kind::Float, Device::Cpu)));
        assert!(!all_bound(&flat));
        flat.sync().expect("same shape, dtype and device");
        assert!(all_bound(&flat));
        assert_eq!(flat.slots[1].view(&flat.params).mean(Kind::Float).double_value(&[]), 0.5);
    }

    #[test]
    fn a_changed_dtype_is_an_error_naming_the_variable() {
        let (mut vs, ..) = store();
        let mut flat = FlatParams::new(named(&vs)).expect("valid variables");
        vs.double();
        let err = flat.sync().expect_err("dtype changed").to_string();
        assert!(err.contains("fc1.bias") && err.contains("Double"), "{err}");
    }

    #[test]
    fn new_rejects_bad_variable_sets() {
        let f32s = (Kind::Float, Device::Cpu);
        let trainable = || Tensor::zeros([2], f32s).set_requires_grad(true);
        let dup = vec![("a".to_owned(), trainable()), ("a".to_owned(), trainable())];
        assert!(matches!(FlatParams::new(dup), Err(OptimError::DuplicateName { .. })));
        let frozen = vec![("a".to_owned(), Tensor::zeros([2], f32s))];
        assert!(matches!(FlatParams::new(frozen), Err(OptimError::NotTrainable { .. })));
        let f64s = vec![(
            "a".to_owned(),
            Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true),
        )];
        assert!(matches!(FlatParams::new(f64s), Err(OptimError::UnsupportedParameter { .. })));
        assert!(matches!(FlatParams::new(Vec::new()), Err(OptimError::NoParameters)));
    }
}

//! Safe access to operator tensors in the arena and the constant section, and load-time checks.
//!
//! The loader runs every operator's `validate` before anything executes, so the lookups below
//! never fail on a loaded model; they still return errors rather than panic, as a second line.

use crate::error::{Error, Result};
use crate::tensor::{DType, Location, TensorDef};

/// The memory an operator works on: the model's constants and the activation arena.
#[derive(Debug)]
pub struct Tensors<'x> {
    pub consts: &'x [u8],
    pub arena: &'x mut [u8],
    /// The running operator's weights as `PreparedModel` packed them, if it did.
    pub packed: Option<&'x crate::kernels::packed::Packed>,
}

/// Read-only view of everything except one operator's output.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'s> {
    consts: &'s [u8],
    before: &'s [u8],
    after: &'s [u8],
    after_start: usize,
}

fn span(t: &TensorDef) -> Result<(usize, usize)> {
    let len = t.byte_len().ok_or(Error::Malformed {
        what: "tensor size",
    })?;
    let start = match t.location {
        Location::Arena(o) | Location::Const(o) => o as usize,
    };
    Ok((
        start,
        start.checked_add(len).ok_or(Error::Malformed {
            what: "tensor size",
        })?,
    ))
}

/// The byte range of an arena tensor, or `None` for a constant or a size that overflows.
pub fn arena_range(t: &TensorDef) -> Option<core::ops::Range<usize>> {
    let Location::Arena(_) = t.location else {
        return None;
    };
    let (start, end) = span(t).ok()?;
    Some(start..end)
}

/// The bytes of a constant tensor, or `None` when it is not a constant inside `consts`.
pub fn constant<'c>(consts: &'c [u8], t: &TensorDef) -> Option<&'c [u8]> {
    let Location::Const(_) = t.location else {
        return None;
    };
    let (start, end) = span(t).ok()?;
    consts.get(start..end)
}

impl<'x> Tensors<'x> {
    /// [`Tensors::packed`], or a constant `None` in builds with no packing kernel.
    #[inline(always)]
    pub fn packed(&self) -> Option<&'x crate::kernels::packed::Packed> {
        if crate::kernels::packed::Packed::POSSIBLE {
            self.packed
        } else {
            None
        }
    }

    /// Splits the memory into the operator's output (mutable) and everything else (shared).
    // Out of line: one copy for every kernel's `eval` (code size, scripts/firmware/code-size.sh).
    #[inline(never)]
    pub fn split(&mut self, output: &TensorDef) -> Result<(Inputs<'_>, &mut [u8])> {
        let Location::Arena(_) = output.location else {
            return Err(Error::Malformed {
                what: "operator output outside the arena",
            });
        };
        let (start, end) = span(output)?;
        if end > self.arena.len() {
            return Err(Error::ArenaTooSmall {
                needed: end,
                available: self.arena.len(),
            });
        }
        let (before, rest) = self.arena.split_at_mut(start);
        let (out, after) = rest.split_at_mut(end - start);
        Ok((
            Inputs {
                consts: self.consts,
                before,
                after,
                after_start: end,
            },
            out,
        ))
    }

    /// The bytes of one tensor, read-only (for operators that work in place, like RESHAPE).
    pub fn bytes(&self, t: &TensorDef) -> Result<&[u8]> {
        let (start, end) = span(t)?;
        let src: &[u8] = match t.location {
            Location::Arena(_) => self.arena,
            Location::Const(_) => self.consts,
        };
        src.get(start..end).ok_or(Error::Malformed {
            what: "tensor outside its section",
        })
    }
}

impl<'s> Inputs<'s> {
    /// The bytes of an input tensor. Fails if it overlaps the output being written.
    // Out of line: one copy for every kernel's `eval` (code size, scripts/firmware/code-size.sh).
    #[inline(never)]
    pub fn get(&self, t: &TensorDef) -> Result<&'s [u8]> {
        let (start, end) = span(t)?;
        let found = match t.location {
            Location::Const(_) => self.consts.get(start..end),
            Location::Arena(_) if end <= self.before.len() => self.before.get(start..end),
            Location::Arena(_) if start >= self.after_start => self
                .after
                .get(start - self.after_start..end - self.after_start),
            Location::Arena(_) => None,
        };
        found.ok_or(Error::Malformed {
            what: "operator input overlaps its output",
        })
    }

    pub fn i8(&self, t: &TensorDef) -> Result<&'s [i8]> {
        Ok(as_i8(self.get(t)?))
    }

    pub fn i32(&self, t: &TensorDef) -> Result<&'s [i32]> {
        as_i32(self.get(t)?)
    }

    pub fn f32(&self, t: &TensorDef) -> Result<&'s [f32]> {
        as_f32(self.get(t)?)
    }

    /// An optional input (bias): `None` stays `None`.
    pub fn opt_i32(&self, t: &Option<TensorDef>) -> Result<Option<&'s [i32]>> {
        t.as_ref().map(|t| self.i32(t)).transpose()
    }

    pub fn opt_f32(&self, t: &Option<TensorDef>) -> Result<Option<&'s [f32]>> {
        t.as_ref().map(|t| self.f32(t)).transpose()
    }
}

pub fn as_i8(b: &[u8]) -> &[i8] {
    bytemuck::cast_slice(b)
}

pub fn as_i8_mut(b: &mut [u8]) -> &mut [i8] {
    bytemuck::cast_slice_mut(b)
}

pub fn as_i32(b: &[u8]) -> Result<&[i32]> {
    bytemuck::try_cast_slice(b).map_err(|_| Error::Malformed {
        what: "misaligned int32 tensor",
    })
}

pub fn as_f32(b: &[u8]) -> Result<&[f32]> {
    bytemuck::try_cast_slice(b).map_err(|_| Error::Malformed {
        what: "misaligned float32 tensor",
    })
}

pub fn as_f32_mut(b: &mut [u8]) -> Result<&mut [f32]> {
    bytemuck::try_cast_slice_mut(b).map_err(|_| Error::Malformed {
        what: "misaligned float32 tensor",
    })
}

pub fn as_i16_mut(b: &mut [u8]) -> Result<&mut [i16]> {
    bytemuck::try_cast_slice_mut(b).map_err(|_| Error::Malformed {
        what: "misaligned int16 tensor",
    })
}

/// Load-time checks for one operator: every tensor inside its section, aligned, and typed as
/// the kernel expects, so the kernel itself can trust shapes and offsets.
#[derive(Debug, Clone, Copy)]
pub struct Validator<'m> {
    pub arena_size: usize,
    /// The model's constant section, so validation can check constant values (shifts, ...).
    pub consts: &'m [u8],
    pub op_index: u16,
    pub op_name: &'static str,
}

impl<'m> Validator<'m> {
    #[cold]
    pub fn fail(&self, reason: &'static str) -> Error {
        Error::InvalidOp {
            op_index: self.op_index,
            op: self.op_name,
            reason,
        }
    }

    pub fn check(&self, ok: bool, reason: &'static str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(reason))
        }
    }

    /// Checks placement and element type of a tensor.
    // The checks below run once per tensor at load time: kept out of line (one copy, not one
    // per call site in every kernel's `validate`) for code size; see scripts/firmware/code-size.sh.
    #[inline(never)]
    pub fn tensor(&self, t: &TensorDef, dtype: DType) -> Result<()> {
        self.check(t.dtype == dtype, "unexpected tensor element type")?;
        let len = t.byte_len().ok_or(self.fail("tensor size overflows"))?;
        let (offset, limit) = match t.location {
            Location::Arena(o) => (o as usize, self.arena_size),
            Location::Const(o) => (o as usize, self.consts.len()),
        };
        let end = offset
            .checked_add(len)
            .ok_or(self.fail("tensor size overflows"))?;
        self.check(
            end <= limit,
            "tensor lies outside its arena or constant section",
        )?;
        self.check(
            offset % dtype.size() == 0,
            "tensor is misaligned for its element type",
        )
    }

    /// Checks a tensor that must live in the arena (activations, outputs).
    #[inline(never)]
    pub fn activation(&self, t: &TensorDef, dtype: DType) -> Result<()> {
        self.check(
            matches!(t.location, Location::Arena(_)),
            "activation tensor is not in the arena",
        )?;
        self.tensor(t, dtype)
    }

    /// Checks a constant (weights, bias, per-channel data).
    #[inline(never)]
    pub fn constant(&self, t: &TensorDef, dtype: DType) -> Result<()> {
        self.check(t.is_const(), "weights or bias must be constant")?;
        self.tensor(t, dtype)
    }

    /// Checks that an input does not overlap the output (the kernels read and write at once).
    #[inline(never)]
    pub fn disjoint(&self, input: &TensorDef, output: &TensorDef) -> Result<()> {
        if let (Location::Arena(a), Location::Arena(b)) = (input.location, output.location) {
            let (a, b) = (a as usize, b as usize);
            let a_end = a + input.byte_len().unwrap_or(0);
            let b_end = b + output.byte_len().unwrap_or(0);
            self.check(
                a_end <= b || b_end <= a,
                "input overlaps output in the arena",
            )?;
        }
        Ok(())
    }

    pub fn elements(&self, t: &TensorDef, expected: usize, reason: &'static str) -> Result<()> {
        self.check(t.shape.elements() == Some(expected), reason)
    }

    /// The values of an `I32` constant (after [`Validator::constant`] passed for it).
    pub fn const_i32(&self, t: &TensorDef) -> Result<&'m [i32]> {
        self.constant(t, DType::I32)?;
        let Location::Const(o) = t.location else {
            return Err(self.fail("expected a constant"));
        };
        let start = o as usize;
        let end = start + t.byte_len().unwrap_or(0);
        self.consts
            .get(start..end)
            .ok_or(self.fail("constant outside the constant section"))
            .and_then(|b| as_i32(b).map_err(|_| self.fail("misaligned constant")))
    }

    /// The values of an `F32` constant.
    pub fn const_f32(&self, t: &TensorDef) -> Result<&'m [f32]> {
        self.constant(t, DType::F32)?;
        let Location::Const(o) = t.location else {
            return Err(self.fail("expected a constant"));
        };
        let start = o as usize;
        let end = start + t.byte_len().unwrap_or(0);
        self.consts
            .get(start..end)
            .ok_or(self.fail("constant outside the constant section"))
            .and_then(|b| as_f32(b).map_err(|_| self.fail("misaligned constant")))
    }

    /// Checks a fused activation range for int8 outputs.
    pub fn act_range_s8(&self, min: i32, max: i32) -> Result<()> {
        self.check(
            (-128..=127).contains(&min) && (-128..=127).contains(&max) && min <= max,
            "bad activation range",
        )
    }

    /// Checks a fixed-point requantization shift (TFLite's range).
    pub fn shift(&self, shift: i32) -> Result<()> {
        self.check(
            (-31..=30).contains(&shift),
            "requantization shift out of range",
        )
    }
}

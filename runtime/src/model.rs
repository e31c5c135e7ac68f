//! A loaded, fully validated model, and running it on an arena.

use crate::arena::{Tensors, Validator};
use crate::decode::{Decode, Reader};
use crate::error::{Error, Result};
use crate::format::{Graph, Header, MetaEntry, HEADER_LEN};
use crate::ops::Op;
use crate::tensor::{Location, TensorDef};

/// Required alignment of the arena passed to [`Model::run`].
pub const ARENA_ALIGN: usize = 16;

/// A model borrowed from its bytes (RAM or flash). Loading checks everything once; running
/// decodes one operator record at a time, so nothing is copied and no heap is used.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    graph: Graph<'a>,
    consts: &'a [u8],
    header: Header,
}

/// Called around every operator by [`Model::run_observed`]: profiling, cycle counting.
pub trait Observer {
    fn before_op(&mut self, _index: usize, _op: &Op) {}
    fn after_op(&mut self, _index: usize, _op: &Op) {}
}

/// An observer that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;
impl Observer for NoObserver {}

/// Iterator over the operator records of a loaded model.
#[derive(Debug, Clone)]
pub struct Ops<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl Iterator for Ops<'_> {
    type Item = Result<Op>;

    fn next(&mut self) -> Option<Result<Op>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut reader = Reader::new(self.rest);
        let op = Op::decode(&mut reader);
        self.rest = reader.rest();
        if op.is_err() {
            self.remaining = 0;
        }
        Some(op)
    }
}

impl<'a> Model<'a> {
    /// Parses and validates a model. After this succeeds, [`Model::run`] cannot go out of
    /// bounds on an arena of [`Model::arena_size`] bytes.
    // Never inlined: called once, and code-size measurements (scripts/firmware/code-size.sh)
    // then see the loader under the runtime's name rather than inside the caller's `main`.
    #[inline(never)]
    pub fn load(bytes: &'a [u8]) -> Result<Model<'a>> {
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(Error::MisalignedModel);
        }
        let header = Header::parse(bytes)?;
        let graph_bytes = &bytes[HEADER_LEN..HEADER_LEN + header.graph_len as usize];
        let mut reader = Reader::new(graph_bytes);
        let graph = Graph::decode(&mut reader).ok_or(Error::Malformed {
            what: "graph section",
        })?;
        if !reader.is_empty() {
            return Err(Error::Malformed {
                what: "graph section (trailing bytes)",
            });
        }
        let const_start = header.const_offset as usize;
        let consts = &bytes[const_start..const_start + header.const_len as usize];
        let model = Model {
            graph,
            consts,
            header,
        };
        model.validate()?;
        Ok(model)
    }

    fn validate(&self) -> Result<()> {
        let arena_size = self.graph.arena_size as usize;
        let io = |index: usize, t: &TensorDef| -> Result<()> {
            let bad = |reason| Error::InvalidIo {
                index: index as u16,
                reason,
            };
            let Location::Arena(offset) = t.location else {
                return Err(bad("graph inputs and outputs must live in the arena"));
            };
            let len = t.byte_len().ok_or(bad("size overflows"))?;
            let end = (offset as usize)
                .checked_add(len)
                .ok_or(bad("size overflows"))?;
            if end > arena_size {
                return Err(bad("lies outside the arena"));
            }
            if !(offset as usize).is_multiple_of(t.dtype.size()) {
                return Err(bad("misaligned for its element type"));
            }
            Ok(())
        };
        for (i, t) in self
            .graph
            .inputs
            .iter()
            .chain(self.graph.outputs.iter())
            .enumerate()
        {
            io(i, t)?;
        }
        if self.graph.op_count > u16::MAX as u32 {
            return Err(Error::LimitExceeded {
                what: "operators",
                limit: u16::MAX as usize,
            });
        }
        let mut count = 0u32;
        let mut ops = self.ops();
        for (index, op) in ops.by_ref().enumerate() {
            let op = op?;
            let v = Validator {
                arena_size,
                consts: self.consts,
                op_index: index as u16,
                op_name: op.name(),
            };
            op.validate(&v)?;
            count += 1;
        }
        if count != self.graph.op_count || !ops.rest.is_empty() {
            return Err(Error::Malformed {
                what: "operator list (count or trailing bytes)",
            });
        }
        for entry in self.metadata_entries() {
            entry?;
        }
        Ok(())
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes of arena [`Model::run`] needs.
    pub fn arena_size(&self) -> usize {
        self.graph.arena_size as usize
    }

    pub fn inputs(&self) -> &[TensorDef] {
        &self.graph.inputs
    }

    pub fn outputs(&self) -> &[TensorDef] {
        &self.graph.outputs
    }

    pub fn op_count(&self) -> usize {
        self.graph.op_count as usize
    }

    /// The constant section (weights, biases, per-channel parameters).
    pub fn consts(&self) -> &'a [u8] {
        self.consts
    }

    /// The operators in execution order.
    pub fn ops(&self) -> Ops<'a> {
        Ops {
            rest: self.graph.ops,
            remaining: self.graph.op_count,
        }
    }

    /// All metadata records.
    pub fn metadata_entries(&self) -> impl Iterator<Item = Result<MetaEntry<'a>>> + 'a {
        let mut rest = self.graph.metadata;
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let mut reader = Reader::new(rest);
            match MetaEntry::decode(&mut reader) {
                Some(entry) => {
                    rest = reader.rest();
                    Some(Ok(entry))
                }
                None => {
                    rest = &[];
                    Some(Err(Error::Malformed {
                        what: "metadata record",
                    }))
                }
            }
        })
    }

    /// The value stored under `key`, if any.
    pub fn metadata(&self, key: &str) -> Option<&'a [u8]> {
        self.metadata_entries()
            .flatten()
            .find(|e| e.key == key)
            .map(|e| e.value)
    }

    /// Class labels in output order (empty if the model carries none).
    pub fn labels(&self) -> impl Iterator<Item = &'a str> + 'a {
        let text = self
            .metadata(crate::format::meta_keys::LABELS)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("");
        text.lines().filter(|l| !l.is_empty())
    }

    fn io_range(t: &TensorDef, arena_len: usize) -> Result<core::ops::Range<usize>> {
        let Location::Arena(offset) = t.location else {
            return Err(Error::Malformed {
                what: "graph tensor outside the arena",
            });
        };
        let start = offset as usize;
        let end = start + t.byte_len().unwrap_or(0);
        if end > arena_len {
            return Err(Error::ArenaTooSmall {
                needed: end,
                available: arena_len,
            });
        }
        Ok(start..end)
    }

    /// The bytes of input `index` inside `arena`, to be filled before [`Model::run`].
    pub fn input_mut<'b>(&self, arena: &'b mut [u8], index: usize) -> Result<&'b mut [u8]> {
        let t = self.graph.inputs.get(index).ok_or(Error::NoSuchTensor {
            index,
            count: self.graph.inputs.len(),
        })?;
        let range = Self::io_range(t, arena.len())?;
        Ok(&mut arena[range])
    }

    /// The bytes of output `index` inside `arena`, valid after [`Model::run`].
    pub fn output<'b>(&self, arena: &'b [u8], index: usize) -> Result<&'b [u8]> {
        let t = self.graph.outputs.get(index).ok_or(Error::NoSuchTensor {
            index,
            count: self.graph.outputs.len(),
        })?;
        let range = Self::io_range(t, arena.len())?;
        Ok(&arena[range])
    }

    fn check_arena(&self, arena: &[u8]) -> Result<()> {
        if arena.len() < self.arena_size() {
            return Err(Error::ArenaTooSmall {
                needed: self.arena_size(),
                available: arena.len(),
            });
        }
        if !(arena.as_ptr() as usize).is_multiple_of(ARENA_ALIGN) {
            return Err(Error::MisalignedArena);
        }
        Ok(())
    }

    /// Runs every operator on `arena`, whose inputs the caller has filled.
    pub fn run(&self, arena: &mut [u8]) -> Result<()> {
        self.run_observed(arena, &mut NoObserver)
    }

    /// Like [`Model::run`], calling `observer` around each operator.
    pub fn run_observed(&self, arena: &mut [u8], observer: &mut impl Observer) -> Result<()> {
        self.run_dyn(arena, observer)
    }

    /// The interpreter loop, one copy for every observer type (code size: two dynamic calls
    /// per operator cost nothing next to a kernel). Never inlined, like `load`: one call per
    /// inference.
    #[inline(never)]
    fn run_dyn(&self, arena: &mut [u8], observer: &mut dyn Observer) -> Result<()> {
        self.check_arena(arena)?;
        let mut tensors = Tensors {
            consts: self.consts,
            arena,
            packed: None,
        };
        // Decodes each record in place rather than through `Ops`: an `Op` is a few hundred
        // bytes, and the iterator's `Option<Result<Op>>` costs copies of it on every operator.
        let mut reader = Reader::new(self.graph.ops);
        for index in 0..self.graph.op_count as usize {
            // Borrowed where it was decoded: moving the `Op` out of the `Result` costs a copy
            // of a few hundred bytes per operator.
            let decoded = Op::decode(&mut reader);
            let op = match &decoded {
                Ok(op) => op,
                Err(e) => return Err(*e),
            };
            observer.before_op(index, op);
            op.eval(&mut tensors)?;
            observer.after_op(index, op);
        }
        Ok(())
    }
}

/// A loaded model with every operator decoded once, for hosts that run it many times
/// (feature `alloc`). [`Model::run`] decodes each operator record as it reaches it, so a
/// microcontroller's RAM never holds a decoded graph; on a host that decoding is pure overhead
/// (about a fifth of ad01_int8's time on x86-64). Same kernels, same results.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct PreparedModel<'a> {
    model: Model<'a>,
    ops: alloc::vec::Vec<Op>,
    /// Per operator: its weights re-laid out for this CPU's fastest kernel, where it has one.
    #[cfg(feature = "std")]
    packed: alloc::vec::Vec<Option<crate::kernels::packed::PreparedOp>>,
}

#[cfg(feature = "alloc")]
impl<'a> PreparedModel<'a> {
    /// Decodes the operators of an already validated model.
    pub fn new(model: Model<'a>) -> Result<Self> {
        let ops: alloc::vec::Vec<Op> = model.ops().collect::<Result<_>>()?;
        #[cfg(feature = "std")]
        let packed = ops
            .iter()
            .map(|op| crate::kernels::packed::PreparedOp::prepare(op, model.consts))
            .collect();
        Ok(PreparedModel {
            model,
            ops,
            #[cfg(feature = "std")]
            packed,
        })
    }

    /// Bytes of packed weights held beside the model (0 where no kernel packs any).
    pub fn packed_bytes(&self) -> usize {
        #[cfg(feature = "std")]
        return self
            .packed
            .iter()
            .flatten()
            .map(|p| p.packed().bytes())
            .sum();
        #[cfg(not(feature = "std"))]
        0
    }

    /// The model (tensors, metadata, arena size).
    pub fn model(&self) -> &Model<'a> {
        &self.model
    }

    /// The decoded operators, in execution order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Like [`Model::run`].
    pub fn run(&self, arena: &mut [u8]) -> Result<()> {
        self.run_observed(arena, &mut NoObserver)
    }

    /// Like [`Model::run_observed`].
    pub fn run_observed(&self, arena: &mut [u8], observer: &mut impl Observer) -> Result<()> {
        self.model.check_arena(arena)?;
        let mut tensors = Tensors {
            consts: self.model.consts,
            arena,
            packed: None,
        };
        for (index, op) in self.ops.iter().enumerate() {
            observer.before_op(index, op);
            #[cfg(feature = "std")]
            {
                let prepared = self.packed[index].as_ref();
                if !prepared.is_some_and(|p| p.run_direct(op, tensors.arena)) {
                    tensors.packed = prepared.map(|p| p.packed());
                    op.eval(&mut tensors)?;
                }
            }
            #[cfg(not(feature = "std"))]
            op.eval(&mut tensors)?;
            observer.after_op(index, op);
        }
        Ok(())
    }
}

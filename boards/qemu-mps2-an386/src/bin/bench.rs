//! Benchmark and bit-exactness proof on QEMU: runs the embedded model on a fixed input and
//! prints, over semihosting, the input and output bytes (hex) and the instructions per
//! inference, then exits QEMU. `scripts/firmware/bench.sh` and the ember-cli QEMU test run it
//! and compare the output with the host runtime on the same input.
//!
//! Output lines (stable, parsed by the tests):
//!   `ember-bench model_bytes=<n> arena_bytes=<n> ops=<n>`
//!   `input[<i>]=<hex>`
//!   `output[<i>]=<hex>`
//!   `instructions_per_inference=<n>` (SysTick ticks * 40 under `-icount shift=0`)
//!   `stack high-water mark: <n> bytes (load and setup: <n>, inference: <n>); arena: <n> bytes`
//!   `op[<i>] name=<op> kernel=<variant> instructions=<n>` (one per operator, second run)
//!   `profile window_overhead_instructions=<n> calibration_windows=<n> calibration_ticks=<n>
//!    run_instructions=<n>` (the profiled run's total, observer included; one line)
//!   `ember-bench done`
//!
//! The per-operator counts come from a second inference through `Model::run_observed` with an
//! observer that reads SysTick before and after each operator (QEMU has no DWT cycle counter).
//! Each count is raw: SysTick's resolution is 40 instructions, and every window also holds the
//! observer's own few instructions, which the `profile` line measures by timing empty windows
//! (the host subtracts it). The second run must produce the same output bytes as the first.
//!
//! The stack is painted at the top of `main` and again just before the inference, so the
//! inference figure is `main`'s frame plus everything `Model::run` calls; the first figure is
//! the larger of the two (the stack this binary needs up to the end of the inference).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{hprint, hprintln};
use ember_board_qemu_mps2_an386::{exit, exit_on_panic, instructions, stack};
use ember_runtime::{Model, Observer, Op, ARENA_ALIGN};

const MODEL_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bench_model.emb"));

#[repr(C, align(16))]
struct Aligned<T>(T);

/// The model, 16-byte aligned so its constant section is aligned as the format promises.
static MODEL: Aligned<[u8; MODEL_BYTES.len()]> = Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/bench_model.emb"
)));

const ARENA_BYTES: usize = 512 * 1024;
static mut ARENA: Aligned<[u8; ARENA_BYTES]> = Aligned([0; ARENA_BYTES]);
const _: () = assert!(core::mem::align_of::<Aligned<[u8; 1]>>() >= ARENA_ALIGN);

/// The fixed input: a 32-bit LCG (Numerical Recipes constants) from seed 1, top byte of each
/// step. Printed too, so the host compares on exactly these bytes.
fn fill_input(bytes: &mut [u8]) {
    let mut state: u32 = 1;
    for b in bytes {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (state >> 24) as u8;
    }
}

/// Operators profiled; a larger model prints the first ones and says it truncated.
const MAX_PROFILED_OPS: usize = 1024;

/// Empty observer windows timed to measure what a window adds besides the operator.
const CALIBRATION_WINDOWS: u32 = 400;

/// SysTick ticks between `before_op` and `after_op` of each operator.
struct OpTicks<'a> {
    started: u32,
    ticks: &'a mut [u32; MAX_PROFILED_OPS],
}

impl Observer for OpTicks<'_> {
    #[inline(always)]
    fn before_op(&mut self, _index: usize, _op: &Op) {
        self.started = cortex_m::peripheral::SYST::get_current();
    }

    #[inline(always)]
    fn after_op(&mut self, index: usize, _op: &Op) {
        let now = cortex_m::peripheral::SYST::get_current();
        if let Some(slot) = self.ticks.get_mut(index) {
            // SysTick counts down and wraps at 2^24.
            *slot = self.started.wrapping_sub(now) & instructions::RELOAD;
        }
    }
}

static mut OP_TICKS: [u32; MAX_PROFILED_OPS] = [0; MAX_PROFILED_OPS];

/// FNV-1a over every output, to check that the profiled run computes the same result.
fn outputs_digest(model: &Model<'_>, arena: &mut [u8]) -> Option<u32> {
    let mut hash: u32 = 0x811c_9dc5;
    for index in 0..model.outputs().len() {
        for &b in model.output(arena, index).ok()? {
            hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    Some(hash)
}

// Not inlined, like `profile`: `main`'s frame (part of the inference stack figure) stays small.
#[inline(never)]
fn fill_inputs(model: &Model<'_>, arena: &mut [u8], print: bool) {
    for index in 0..model.inputs().len() {
        match model.input_mut(arena, index) {
            Ok(input) => {
                fill_input(input);
                if print {
                    print_hex("input", index, input);
                }
            }
            Err(err) => {
                hprintln!("ember-bench: input {}: {:?}", index, err);
                exit(false)
            }
        }
    }
}

fn print_hex(label: &str, index: usize, bytes: &[u8]) {
    hprint!("{}[{}]=", label, index);
    for b in bytes {
        hprint!("{:02x}", b);
    }
    hprintln!();
}

#[entry]
fn main() -> ! {
    stack::paint();
    exit_on_panic();
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        exit(false)
    };
    let mut ticks = instructions::TickCounter::new(peripherals.SYST);

    if MODEL.0.is_empty() {
        hprintln!("ember-bench: no model embedded; build with EMBER_BENCH_MODEL=path/to/model.emb");
        exit(false);
    }
    let model = match Model::load(&MODEL.0) {
        Ok(model) => model,
        Err(err) => {
            hprintln!("ember-bench: model rejected: {:?}", err);
            exit(false)
        }
    };
    // SAFETY: the only reference to ARENA, taken once in `main`.
    let arena_storage = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
    let Some(arena) = arena_storage.0.get_mut(..model.arena_size()) else {
        hprintln!(
            "ember-bench: model needs a {} byte arena, the bench has {}",
            model.arena_size(),
            ARENA_BYTES
        );
        exit(false)
    };
    hprintln!(
        "ember-bench model_bytes={} arena_bytes={} ops={}",
        MODEL.0.len(),
        model.arena_size(),
        model.op_count()
    );
    fill_inputs(&model, arena, true);
    let setup_stack = stack::high_water_mark();
    stack::paint();
    let (result, elapsed) = ticks.measure(|| model.run(arena));
    let inference_stack = stack::high_water_mark();
    if let Err(err) = result {
        hprintln!("ember-bench: inference failed: {:?}", err);
        exit(false);
    }
    for index in 0..model.outputs().len() {
        match model.output(arena, index) {
            Ok(output) => print_hex("output", index, output),
            Err(err) => {
                hprintln!("ember-bench: output {}: {:?}", index, err);
                exit(false)
            }
        }
    }
    hprintln!(
        "instructions_per_inference={}",
        u64::from(elapsed) * instructions::INSTRUCTIONS_PER_TICK
    );
    hprintln!(
        "stack high-water mark: {} bytes (load and setup: {}, inference: {}); arena: {} bytes",
        setup_stack.max(inference_stack),
        setup_stack,
        inference_stack,
        model.arena_size()
    );
    profile(&model, arena, &mut ticks);
    hprintln!("ember-bench done");
    exit(true)
}

/// Runs the model again with a SysTick observer and prints the ticks of every operator, then
/// times empty observer windows so the host can subtract the observer's own instructions.
#[inline(never)]
fn profile(model: &Model<'_>, arena: &mut [u8], ticks: &mut instructions::TickCounter) {
    let Some(first_digest) = outputs_digest(model, arena) else {
        hprintln!("ember-bench: cannot read the outputs");
        exit(false)
    };
    // The planner may reuse the input's bytes for activations: write the input again.
    fill_inputs(model, arena, false);
    // SAFETY: the only reference to OP_TICKS, taken once here.
    let op_ticks = unsafe { &mut *core::ptr::addr_of_mut!(OP_TICKS) };
    let mut observer = OpTicks {
        started: 0,
        ticks: op_ticks,
    };
    let (result, run_ticks) = ticks.measure(|| model.run_observed(arena, &mut observer));
    if let Err(err) = result {
        hprintln!("ember-bench: profiled inference failed: {:?}", err);
        exit(false);
    }
    if outputs_digest(model, arena) != Some(first_digest) {
        hprintln!("ember-bench: the profiled run's output differs from the first run");
        exit(false);
    }
    for (index, op) in model.ops().enumerate().take(MAX_PROFILED_OPS) {
        let Ok(op) = op else {
            hprintln!("ember-bench: operator {} cannot be decoded", index);
            exit(false)
        };
        let count = observer.ticks.get(index).copied().unwrap_or(0);
        hprintln!(
            "op[{}] name={} kernel={} instructions={}",
            index,
            op.name(),
            op.variant_name(),
            u64::from(count) * instructions::INSTRUCTIONS_PER_TICK
        );
    }
    if model.op_count() > MAX_PROFILED_OPS {
        hprintln!(
            "profile truncated to the first {} of {} operators",
            MAX_PROFILED_OPS,
            model.op_count()
        );
    }

    // The same observer around no operator: what remains is the observer's window overhead.
    let Some(Ok(first_op)) = model.ops().next() else {
        exit(false)
    };
    let windows_ticks: u32 = {
        let mut total: u32 = 0;
        for _ in 0..CALIBRATION_WINDOWS {
            observer.before_op(0, core::hint::black_box(&first_op));
            observer.after_op(0, core::hint::black_box(&first_op));
            total = total.wrapping_add(core::hint::black_box(observer.ticks[0]));
        }
        total
    };
    let windows = u64::from(CALIBRATION_WINDOWS);
    hprintln!(
        "profile window_overhead_instructions={} calibration_windows={} calibration_ticks={} run_instructions={}",
        (u64::from(windows_ticks) * instructions::INSTRUCTIONS_PER_TICK + windows / 2) / windows,
        CALIBRATION_WINDOWS,
        windows_ticks,
        u64::from(run_ticks) * instructions::INSTRUCTIONS_PER_TICK
    );
}

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
//!
//! The stack is painted at the top of `main` and again just before the inference, so the
//! inference figure is `main`'s frame plus everything `Model::run` calls; the first figure is
//! the larger of the two (the stack this binary needs up to the end of the inference).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{hprint, hprintln};
use ember_board_qemu_mps2_an386::{exit, exit_on_panic, instructions, stack};
use ember_runtime::{Model, ARENA_ALIGN};

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
    for index in 0..model.inputs().len() {
        match model.input_mut(arena, index) {
            Ok(input) => {
                fill_input(input);
                print_hex("input", index, input);
            }
            Err(err) => {
                hprintln!("ember-bench: input {}: {:?}", index, err);
                exit(false)
            }
        }
    }
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
    exit(true)
}

//! The logging shim: `defmt` with the `defmt` feature, nothing otherwise. Format strings use
//! defmt syntax (`{=u32}`), so the same call sites work in both builds.

#[cfg(feature = "defmt")]
macro_rules! fw_log {
    (info, $($arg:tt)*) => { defmt::info!($($arg)*) };
    (warn, $($arg:tt)*) => { defmt::warn!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! fw_log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        // Touch the arguments so values used only for logging are not "unused".
        $( let _ = &$arg; )*
    }};
}

pub(crate) use fw_log;

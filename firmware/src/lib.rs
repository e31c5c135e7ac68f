#![no_std]
//! Device logic (under construction).

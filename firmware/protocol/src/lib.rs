#![no_std]
//! Wire protocol (under construction).

//! A serial port (here: QEMU's UART PTY) as an `ember_link::Transport`.

use std::io;
use std::time::Duration;

use ember_link::Transport;

/// A port opened through the `serialport` crate, the same way the `ember` CLI opens boards.
pub struct SerialTransport {
    port: Box<dyn serialport::SerialPort>,
}

impl std::fmt::Debug for SerialTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialTransport")
            .field("port", &self.port.name())
            .finish()
    }
}

impl SerialTransport {
    /// Opens `path` at 115200 baud. Not exclusive: the "host killed mid-upload" child opens
    /// the same PTY while the test keeps its own handle (which it does not read meanwhile).
    pub fn open(path: &str) -> Result<Self, serialport::Error> {
        let port = serialport::new(path, 115_200)
            .timeout(Duration::from_millis(500))
            .exclusive(false)
            .open()?;
        Ok(SerialTransport { port })
    }

    /// Discards whatever the device sent that nobody read yet.
    pub fn discard_input(&mut self) -> io::Result<()> {
        self.port
            .clear(serialport::ClearBuffer::Input)
            .map_err(io::Error::from)
    }
}

impl io::Read for SerialTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.port.read(buf)
    }
}

impl io::Write for SerialTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.port.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.port.flush()
    }
}

impl Transport for SerialTransport {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.port.set_timeout(timeout).map_err(io::Error::from)
    }
}

//! The driver protocol: how programs in any language embed the engine. spex starts the driver
//! command once and talks JSON lines over its standard input and output:
//!
//! ```text
//! spex   → driver   {"id":0,"masks":["0110…","1011…"]}
//! driver → spex     {"id":0,"values":[0.42,-1.3]}
//! ```
//!
//! One request per batch, each answered before the next is sent; `id` is the batch id (batch `b`
//! holds masks `b·batch_size ..` of the run, so a resumed run continues the numbering).
//! A mask is a string of '0'/'1', one character per player (1 = kept). The driver must print
//! nothing else on standard output (logs go to standard error, which spex passes through) and
//! should exit when its standard input closes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ValueError, ValueFunction};
use crate::mask::{MaskBatch, MaskSlice};

/// A request line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// Batch id.
    pub id: u64,
    /// Masks as strings of '0'/'1'.
    pub masks: Vec<String>,
}

/// A response line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request answered.
    pub id: u64,
    /// One value per mask of that request.
    pub values: Vec<f64>,
}

/// A running driver process, usable as a [`ValueFunction`].
pub struct Driver {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    timeout: Option<Duration>,
    next_id: u64,
}

fn failed(msg: String) -> ValueError {
    ValueError::Failed(msg)
}

impl Driver {
    /// Starts `command` through the shell (`sh -c`), so arguments and quoting work as typed.
    /// With `timeout`, a batch not answered in time is an error, and the driver's whole process
    /// group is stopped.
    pub fn spawn(command: &str, timeout: Option<Duration>) -> Result<Self, ValueError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so that stopping it also stops whatever it started.
            .process_group(0)
            .spawn()
            .map_err(|e| failed(format!("cannot start driver `{command}`: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        // A reader thread lets the wait for an answer time out. Blank lines (a stray `print()`)
        // carry nothing and are skipped, as `serve` skips them in requests.
        std::thread::spawn(move || {
            let lines = BufReader::new(stdout).lines();
            for line in lines.filter(|l| !l.as_ref().is_ok_and(|l| l.trim().is_empty())) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Driver { command: command.to_string(), child, stdin, lines, timeout, next_id: 0 })
    }

    fn send(&mut self, id: u64, masks: MaskSlice<'_>) -> Result<(), ValueError> {
        let request = Request { id, masks: masks.iter().map(|m| m.to_string()).collect() };
        let mut line = serde_json::to_string(&request).expect("request serialises");
        line.push('\n');
        let stdin = self.stdin.as_mut().ok_or_else(|| failed("driver input is closed".into()))?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| failed(format!("cannot send batch {id} to the driver: {e}{}", self.exit_note())))
    }

    fn receive(&mut self, id: u64) -> Result<String, ValueError> {
        let next = match self.timeout {
            Some(t) => self.lines.recv_timeout(t),
            None => self.lines.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => Err(failed(format!("cannot read the driver's answer to batch {id}: {e}"))),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(failed(format!(
                    "the driver did not answer batch {id} within {:.1} s (timeout); it was stopped",
                    self.timeout.unwrap_or_default().as_secs_f64()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(failed(format!("the driver closed its output before answering batch {id}{}", self.exit_note())))
            }
        }
    }

    /// Stops the driver and everything in its process group.
    fn kill(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the process group the driver leads; it has
        // no memory-safety preconditions.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// How the driver exited, if it has.
    fn exit_note(&mut self) -> String {
        std::thread::sleep(Duration::from_millis(20));
        match self.child.try_wait() {
            Ok(Some(status)) => format!(" (driver `{}` exited: {status})", self.command),
            _ => String::new(),
        }
    }
}

/// The position of the first value of a response that is well formed but for NaN, Infinity or
/// null values, so that the error can name the mask.
fn missing_value(line: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Lenient {
        values: Vec<Option<f64>>,
    }
    let lenient = line.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null");
    let response: Lenient = serde_json::from_str(&lenient).ok()?;
    response.values.iter().position(Option::is_none)
}

/// Parses a response line for request `id` expecting `count` values.
fn parse_response(line: &str, id: u64, count: usize) -> Result<Vec<f64>, ValueError> {
    let shown: String = line.chars().take(200).collect();
    let response: Response = serde_json::from_str(line).map_err(|e| match missing_value(line) {
        Some(i) => failed(format!(
            "answer to batch {id}: value {i} (of mask {i} in the batch) is NaN, Infinity or null; every value must be \
             a finite number (Python's json.dumps writes NaN and Infinity, which JSON cannot hold)"
        )),
        None => failed(format!(
            "malformed answer to batch {id}: {e}; the line was: {shown:?} (drivers must print only protocol lines on stdout)"
        )),
    })?;
    if response.id != id {
        return Err(failed(format!("the driver answered id {} where batch {id} was expected", response.id)));
    }
    if response.values.len() != count {
        return Err(failed(format!(
            "the driver returned {} values for the {count} masks of batch {id}",
            response.values.len()
        )));
    }
    Ok(response.values)
}

impl ValueFunction for Driver {
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        let id = self.next_id;
        self.send(id, masks)?;
        let line = self.receive(id)?;
        let values = parse_response(&line, id, masks.len())?;
        self.next_id += 1;
        Ok(values)
    }

    fn begin_batch(&mut self, batch: usize) {
        self.next_id = batch as u64;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF asks the driver to exit
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

/// The driver side of the protocol, for drivers written in Rust: answers every request read from
/// `input` with `f`'s values on `output` until `input` ends.
pub fn serve(input: impl BufRead, mut output: impl Write, f: &mut dyn ValueFunction) -> Result<(), ValueError> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = serde_json::from_str(&line).map_err(|e| failed(format!("malformed request: {e}")))?;
        let masks = MaskBatch::parse_rows(request.masks.iter().map(String::as_str))
            .map_err(|e| failed(format!("request {}: {e}", request.id)))?;
        let values = f.evaluate(masks.as_slice())?;
        let mut out = serde_json::to_string(&Response { id: request.id, values }).expect("response serialises");
        out.push('\n');
        output.write_all(out.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_answers_each_request() {
        let input = "{\"id\":3,\"masks\":[\"101\",\"111\"]}\n\n{\"id\":4,\"masks\":[\"000\"]}\n";
        let mut out = Vec::new();
        let mut f = |m: MaskSlice<'_>| m.iter().map(|r| r.count_kept() as f64).collect::<Vec<_>>();
        serve(input.as_bytes(), &mut out, &mut f).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"id\":3,\"values\":[2.0,3.0]}\n{\"id\":4,\"values\":[0.0]}\n");
    }

    #[test]
    fn blank_lines_from_the_driver_are_skipped() {
        let script = r#"while read -r l; do echo; echo ' '; echo '{"id":0,"values":[7]}'; done"#;
        let mut driver = Driver::spawn(script, Some(Duration::from_secs(30))).unwrap();
        let masks = MaskBatch::parse_rows(["10"]).unwrap();
        assert_eq!(driver.evaluate(masks.as_slice()).unwrap(), vec![7.0]);
    }

    #[test]
    fn responses_are_checked() {
        assert_eq!(parse_response("{\"id\":1,\"values\":[1,2]}", 1, 2).unwrap(), vec![1.0, 2.0]);
        let msg = |line: &str| parse_response(line, 1, 2).unwrap_err().to_string();
        assert!(msg("hello").contains("malformed answer to batch 1"));
        assert!(msg("{\"id\":2,\"values\":[1,2]}").contains("answered id 2"));
        assert!(msg("{\"id\":1,\"values\":[1]}").contains("returned 1 values for the 2 masks"));
        assert!(msg("{\"id\":1,\"values\":[1,null]}").contains("value 1 (of mask 1 in the batch) is NaN"));
        assert!(msg("{\"id\": 1, \"values\": [NaN, 2]}").contains("value 0 (of mask 0 in the batch)"));
        assert!(msg("{\"id\": 1, \"values\": [1, -Infinity]}").contains("value 1 "));
        assert!(msg("{\"id\": 1, \"values\": [1, \"NaN\"]}").contains("malformed"));
    }
}

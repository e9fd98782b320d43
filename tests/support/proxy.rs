//! Runs the real `keyhole` binary as a proxy for a test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `keyhole run`, stopped (SIGTERM) when dropped.
pub struct Keyhole {
    child: Option<Child>,
    /// The proxy's address.
    pub addr: SocketAddr,
    /// The admin API's address, when started with `--admin`.
    pub admin: Option<SocketAddr>,
    /// The state directory (holds `ca.pem`).
    pub state_dir: PathBuf,
    /// Where stderr goes.
    pub log_path: PathBuf,
    /// Where stdout goes after the first line.
    pub stdout_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Keyhole {
    /// Starts `keyhole run --config <config> --listen 127.0.0.1:0 --state-dir <tmp> ARGS...`.
    pub fn start(config: &str, args: &[String], env: &[(&str, &str)]) -> Keyhole {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config, args, env)
    }

    /// As [`Keyhole::start`], with a state dir that already exists.
    pub fn start_in(
        dir: tempfile::TempDir,
        config: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Keyhole {
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config).expect("write config");
        let state_dir = dir.path().join("state");
        let log_path = dir.path().join("keyhole.log");
        let stdout_path = dir.path().join("keyhole.out");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyhole"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--state-dir")
            .arg(&state_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&log_path).expect("log file"),
            ));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keyhole");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let out_path = stdout_path.clone();
        let with_admin = args.iter().any(|a| a == "--admin");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            if with_admin {
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let _ = tx.send(line);
            }
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
            let _ = std::fs::write(out_path, rest);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "keyhole did not start: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let Some(addr) = line.trim().strip_prefix("keyhole listening on ") else {
            let _ = child.wait();
            panic!(
                "keyhole did not start: {line:?}\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        };
        let admin = with_admin.then(|| {
            let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
            line.trim()
                .strip_prefix("keyhole admin listening on ")
                .unwrap_or_else(|| panic!("no admin address: {line:?}"))
                .parse()
                .expect("admin addr")
        });
        Keyhole {
            addr: addr.parse().expect("addr"),
            admin,
            child: Some(child),
            state_dir,
            log_path,
            stdout_path,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// keyhole's CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("ca.pem")).expect("ca.pem")
    }

    /// keyhole's CA certificate, DER.
    pub fn ca_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem().as_bytes()).expect("ca der")
    }

    /// What keyhole logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log once it holds `needle` (keyhole writes log lines from a
    /// background thread, a moment after the event); panics after 10 s.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if std::time::Instant::now() > deadline {
                panic!("the log never held {needle:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://addr`, for `--proxy` and `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = wait_timeout(child, Duration::from_secs(20));
        self.child = None;
        status
    }

    /// Stops keyhole (SIGTERM) and starts it again on the same config file
    /// (as it is now) and state directory, with `args`.
    pub fn restart(mut self, args: &[String], env: &[(&str, &str)]) -> Keyhole {
        self.terminate();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        drop(self);
        let config = std::fs::read_to_string(dir.path().join("config.json")).expect("config");
        Self::start_in(dir, &config, args, env)
    }

    /// The config file keyhole runs on.
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("config.json")
    }

    /// What `keyhole env --format json` prints for this proxy's address,
    /// config and state: the proxy and CA variables, and a placeholder
    /// per credential.
    pub fn env(&self) -> HashMap<String, String> {
        let mut env = Command::new(env!("CARGO_BIN_EXE_keyhole"));
        env.args(["env", "--format", "json", "--listen"])
            .arg(self.addr.to_string())
            .arg("--config")
            .arg(self.config_path())
            .arg("--state-dir")
            .arg(&self.state_dir);
        let json = super::stdout_of(&mut env, "keyhole env");
        serde_json::from_str(&json).expect("keyhole env prints JSON")
    }

    /// Writes a file in the test's folder.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self
            .state_dir
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl AsRef<Keyhole> for Keyhole {
    fn as_ref(&self) -> &Keyhole {
        self
    }
}

impl Drop for Keyhole {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

//! A local Azurite (the Azure Storage emulator from npm) for tests and
//! benchmarks: blob service only, bound to 127.0.0.1, telemetry off, data
//! in a folder of the caller's. `make test` installs it under
//! `tools/azurite/`; it is started with `node` directly (no npx wrapper
//! left behind) and stopped by its PID.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{AccountConfig, Credential, EMULATOR_ACCOUNT};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "Azurite is not installed at {0} (`make test` installs it: npm ci --prefix tools/azurite)"
    )]
    NotInstalled(PathBuf),
    #[error("starting Azurite: {0}")]
    Start(std::io::Error),
    #[error("Azurite did not listen on {0} within {1:?} (log: {2})")]
    NotReady(SocketAddr, Duration, PathBuf),
}

/// A running (or stopped, restartable) Azurite blob service. Dropping it
/// kills the process.
pub struct Azurite {
    script: PathBuf,
    location: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Azurite {
    /// The emulator's entry point inside the repository checkout.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tools/azurite/node_modules/azurite/dist/src/blob/main.js")
    }

    /// Starts Azurite on a free loopback port, keeping its data in
    /// `location` (created). The port is found by binding and releasing
    /// it, so another process may take it first: then Azurite exits at
    /// once and another port is tried.
    pub fn start(location: &Path) -> Result<Azurite, EmulatorError> {
        let script = Self::script();
        if !script.is_file() {
            return Err(EmulatorError::NotInstalled(script));
        }
        std::fs::create_dir_all(location).map_err(EmulatorError::Start)?;
        let mut tries = 0;
        loop {
            tries += 1;
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(EmulatorError::Start)?
                .port();
            let mut azurite = Azurite {
                script: script.clone(),
                location: location.to_owned(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                child: None,
            };
            match azurite.resume() {
                Ok(()) => return Ok(azurite),
                Err(EmulatorError::NotReady(..)) if tries < 3 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The blob endpoint, path-style: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/{EMULATOR_ACCOUNT}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An `[azure.accounts.<name>]` entry for this emulator.
    pub fn account(&self) -> AccountConfig {
        AccountConfig {
            account: EMULATOR_ACCOUNT.to_owned(),
            endpoint: Some(self.endpoint()),
            credential: Credential::Emulator,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process. Azurite saves its metadata only now and then, so
    /// what was written just before may be gone after [`Azurite::resume`]:
    /// a stop stands for an outage, not for a clean restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and location after [`Azurite::stop`].
    pub fn resume(&mut self) -> Result<(), EmulatorError> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = self.location.join("azurite.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(EmulatorError::Start)?;
        let err = out.try_clone().map_err(EmulatorError::Start)?;
        let child = Command::new("node")
            .arg(&self.script)
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.addr.port().to_string())
            .arg("--location")
            .arg(&self.location)
            .args(["--disableTelemetry", "--skipApiVersionCheck"])
            // The SDK asks a CRC64 of every ranged GET under 4 MiB
            // (`x-ms-range-get-content-crc64`), which Azure answers and
            // strict Azurite refuses with a 500.
            .arg("--loose")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(EmulatorError::Start)?;
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || started.elapsed() > READY_TIMEOUT {
                self.stop();
                return Err(EmulatorError::NotReady(self.addr, READY_TIMEOUT, log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::{Accounts, AzureConfig};

    /// The emulator starts, takes a container and a blob through the
    /// configured-account client, stops (refusing connections) and serves
    /// again on the same port.
    #[test]
    fn starts_serves_stops_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut azurite = Azurite::start(dir.path()).unwrap();
        let config = AzureConfig {
            accounts: [("dev".to_owned(), azurite.account())].into(),
        };
        let accounts = Accounts::new(&config).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let container = accounts.container("dev", "probe").unwrap();
        runtime.block_on(async {
            container.create().await.unwrap();
            container
                .blob_client("a/b.txt")
                .put_block_blob("hello")
                .await
                .unwrap();
        });
        let body = runtime.block_on(async {
            container
                .blob_client("a/b.txt")
                .get_content()
                .await
                .unwrap()
        });
        assert_eq!(body, b"hello");
        azurite.stop();
        assert!(TcpStream::connect_timeout(&azurite.addr(), Duration::from_millis(200)).is_err());
        let down = runtime.block_on(container.blob_client("a/b.txt").get_content());
        assert!(down.is_err());
        azurite.resume().unwrap();
        let again = accounts.container("dev", "probe-again").unwrap();
        runtime.block_on(async {
            again.create().await.unwrap();
            again.blob_client("c").put_block_blob("back").await.unwrap();
            assert_eq!(again.blob_client("c").get_content().await.unwrap(), b"back");
        });
    }
}

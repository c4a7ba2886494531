//! A containerd of `up`'s own, for a machine where none runs: its config,
//! root, state and socket under `<D>/containerd`, started as a child in a
//! process group of its own (so a Ctrl-C in the terminal reaches `up`
//! alone, which stops it last), restarted with back-off if it dies, and
//! stopped (SIGTERM, then SIGKILL) on exit. Containers outlive it: their
//! shims are not its children's children once it exits, and a restarted
//! containerd reconnects to them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Whether something accepts connections on a unix socket (containerd
/// answers there, or it is stale).
pub async fn answers(socket: &Path) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::UnixStream::connect(socket)
        )
        .await,
        Ok(Ok(_))
    )
}

/// `<D>/containerd/config.toml`: containerd's own CRI plugin is disabled
/// (deckhand is the CRI), everything else lives under `dir`.
pub fn config(dir: &Path) -> String {
    let q = |p: PathBuf| toml::Value::String(p.display().to_string()).to_string();
    format!(
        "# Written by `deckhand up`: a containerd for this data dir only.\n\
         version = 2\n\
         root = {root}\n\
         state = {state}\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         \n\
         [grpc]\n  address = {sock}\n\
         \n\
         [ttrpc]\n  address = {ttrpc}\n",
        root = q(dir.join("root")),
        state = q(dir.join("state")),
        sock = q(socket(dir)),
        ttrpc = q(dir.join("state").join("containerd.sock.ttrpc")),
    )
}

pub fn socket(dir: &Path) -> PathBuf {
    dir.join("containerd.sock")
}

/// The supervisor's handle: dropping it does not stop containerd; `stop` does.
pub struct Supervised {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervised {
    /// Starts `bin` on `dir`'s config and waits (at most `timeout`) until
    /// its socket answers.
    pub async fn start(bin: &Path, dir: &Path, timeout: Duration) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("config.toml");
        std::fs::write(&conf, config(dir))
            .with_context(|| format!("writing {}", conf.display()))?;
        let log = dir.join("containerd.log");
        let sock = socket(dir);
        let child = spawn(bin, &conf, &log)?;
        let (stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let task = tokio::spawn(supervise(
            bin.to_path_buf(),
            conf,
            log.clone(),
            child,
            stopped,
        ));
        let supervised = Supervised { stop, task };
        while !answers(&sock).await {
            if started.elapsed() > timeout || supervised.task.is_finished() {
                supervised.stop().await;
                anyhow::bail!(
                    "containerd did not start within {timeout:?}: see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(supervised)
    }

    /// SIGTERM, up to 10 s, then SIGKILL; returns when it has exited.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn spawn(bin: &Path, conf: &Path, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(bin)
        .arg("--config")
        .arg(conf)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

async fn supervise(
    bin: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    mut child: Child,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let ran_since = Instant::now();
        let status = tokio::select! {
            status = child.wait() => status,
            _ = until_stopped(&mut stopped) => {
                terminate(&mut child).await;
                return;
            }
        };
        if *stopped.borrow() {
            return;
        }
        tracing::warn!(status = ?status.ok(), log = %log.display(), "containerd exited: restarting it");
        if ran_since.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = until_stopped(&mut stopped) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        match spawn(&bin, &conf, &log) {
            Ok(c) => child = c,
            // The old child has exited: its wait returns at once and the
            // next back-off tries again.
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "restarting containerd failed")
            }
        }
    }
}

/// Resolves once stop is asked (the borrow it gives is dropped here, not
/// held across the caller's awaits).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            tracing::info!("stopped containerd");
            return;
        }
        tracing::warn!("containerd did not stop within 10 s of SIGTERM: killing it");
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_under_the_data_dir() {
        let c = config(Path::new("/d/containerd"));
        let v: toml::Value = toml::from_str(&c).expect("valid toml");
        assert_eq!(v["root"].as_str(), Some("/d/containerd/root"));
        assert_eq!(v["state"].as_str(), Some("/d/containerd/state"));
        assert_eq!(
            v["grpc"]["address"].as_str(),
            Some("/d/containerd/containerd.sock")
        );
        assert_eq!(
            v["disabled_plugins"][0].as_str(),
            Some("io.containerd.grpc.v1.cri")
        );
    }
}

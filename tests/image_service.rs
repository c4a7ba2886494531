//! The CRI ImageService of `deckhand cri`, driven over its socket against the
//! real containerd and the local registry (`hack/test-env up`). Needs root.

mod common;

use std::time::Duration;

use base64::Engine;
use common::registry_proxy::{Mode, RegistryProxy};
use common::*;
use deckhand::cri::v1 as cri;

#[tokio::test]
async fn pull_by_tag_then_list_status_and_remove() {
    let (_server, mut client) = CriServer::start().await;
    let id = pull(&mut client, BUSYBOX).await.expect("pull");
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "image ref is an id: {id}"
    );

    let listed = list(&mut client).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let image = &listed[0];
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, [BUSYBOX]);
    let digest = registry_digest("e2e-test-images/busybox", "1.29-2").await;
    assert_eq!(
        image.repo_digests,
        [format!("registry.k8s.io/e2e-test-images/busybox@{digest}")]
    );
    assert!(
        image.size > 500_000,
        "size counts the layers: {}",
        image.size
    );

    // Status answers for the id, the bare hex id, the tag and the digest alike.
    for name in [
        id.clone(),
        id.trim_start_matches("sha256:").to_string(),
        BUSYBOX.to_string(),
        image.repo_digests[0].clone(),
    ] {
        let found = status(&mut client, &name)
            .await
            .unwrap_or_else(|| panic!("status of {name}"));
        assert_eq!(found.id, id, "status of {name}");
    }
    // Verbose status carries the image config.
    let verbose = client
        .images
        .image_status(cri::ImageStatusRequest {
            image: image_spec(BUSYBOX),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["Cmd"][0], "sh");
    assert_eq!(
        info["imageSpec"]["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A filter names one image.
    let filtered = client
        .images
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: image_spec(BUSYBOX),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);

    remove(&mut client, &id).await.expect("remove by id");
    assert!(status(&mut client, BUSYBOX).await.is_none());
    assert!(list(&mut client).await.is_empty());
    // Removing what is not there is fine.
    remove(&mut client, &id).await.expect("remove again");
    remove(&mut client, "registry.k8s.io/never/pulled:1")
        .await
        .expect("remove unknown");
}

#[tokio::test]
async fn removing_by_id_drops_every_tag_and_frees_content() {
    let (server, mut client) = CriServer::start().await;
    let tags = [
        "gcr.io/k8s-staging-cri-tools/test-image-tags:1",
        "gcr.io/k8s-staging-cri-tools/test-image-tags:2",
        "gcr.io/k8s-staging-cri-tools/test-image-tags:3",
    ];
    let mut ids = vec![];
    for tag in tags {
        ids.push(pull(&mut client, tag).await.expect("pull"));
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one image, three tags: {ids:?}"
    );
    let image = status(&mut client, tags[1]).await.unwrap();
    assert_eq!(image.repo_tags, tags);
    assert!(
        !server
            .ctr(&["snapshots", "ls"])
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .is_empty()
    );

    remove(&mut client, &ids[0]).await.unwrap();
    for tag in tags {
        assert!(status(&mut client, tag).await.is_none(), "{tag} gone");
    }
    assert_eq!(server.ctr(&["images", "ls", "-q"]).trim(), "");
    assert_eq!(
        server.ctr(&["content", "ls", "-q"]).trim(),
        "",
        "content collected"
    );
    assert_eq!(
        server.ctr(&["snapshots", "ls"]).lines().count(),
        1,
        "snapshots collected"
    );
}

#[tokio::test]
async fn image_user_is_reported_as_uid_or_username() {
    let (_server, mut client) = CriServer::start().await;
    for (image, uid, username) in [
        ("user-uid", Some(1002), ""),
        ("user-username", None, "www-data"),
        ("user-uid-group", Some(1003), ""),
        ("user-username-group", None, "www-data"),
    ] {
        let name = format!("gcr.io/k8s-staging-cri-tools/test-image-{image}");
        pull(&mut client, &name).await.expect("pull");
        let found = status(&mut client, &name).await.unwrap();
        assert_eq!(found.uid.map(|u| u.value), uid, "{image}");
        assert_eq!(found.username, username, "{image}");
    }
}

#[tokio::test]
async fn pull_by_digest_records_the_digest_and_no_tag() {
    let (_server, mut client) = CriServer::start().await;
    let digest = registry_digest("e2e-test-images/busybox", "1.29-2").await;
    let by_digest = format!("registry.k8s.io/e2e-test-images/busybox@{digest}");
    let id = pull(&mut client, &by_digest).await.expect("pull by digest");
    let image = status(&mut client, &by_digest).await.unwrap();
    assert_eq!(image.id, id);
    assert_eq!(image.repo_digests, [by_digest]);
    assert!(image.repo_tags.is_empty(), "{:?}", image.repo_tags);

    // A digest the registry does not have is NotFound.
    let missing = format!(
        "registry.k8s.io/e2e-test-images/busybox@sha256:{}",
        "0".repeat(64)
    );
    let err = pull(&mut client, &missing).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn short_names_and_mirrors_keep_the_names_the_user_wrote() {
    let (_server, mut client) = CriServer::start().await;
    // `busybox` is docker.io/library/busybox:latest, served by the mirror.
    let id = pull(&mut client, "busybox").await.expect("pull short name");
    let image = status(&mut client, "busybox").await.unwrap();
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, ["docker.io/library/busybox:latest"]);
    assert!(image.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"));
    // The same bytes pulled by the mirror's own name are the same image.
    let direct = pull(&mut client, "127.0.0.1:5000/library/busybox:latest")
        .await
        .unwrap();
    assert_eq!(direct, id);
    let image = status(&mut client, &id).await.unwrap();
    assert_eq!(
        image.repo_tags,
        [
            "127.0.0.1:5000/library/busybox:latest",
            "docker.io/library/busybox:latest"
        ]
    );
}

#[tokio::test]
async fn an_index_yields_the_linux_amd64_image() {
    let (_server, mut client) = CriServer::start().await;
    let id = pull(&mut client, "127.0.0.1:5000/deckhand/multiarch:1")
        .await
        .unwrap();
    // Its amd64 entry is the busybox image; the arm64 one is a different config.
    let busybox = pull(&mut client, BUSYBOX).await.unwrap();
    assert_eq!(id, busybox);
    let index_digest = registry_digest("deckhand/multiarch", "1").await;
    let image = status(&mut client, "127.0.0.1:5000/deckhand/multiarch:1")
        .await
        .unwrap();
    assert!(
        image
            .repo_digests
            .contains(&format!("127.0.0.1:5000/deckhand/multiarch@{index_digest}")),
        "the repo digest is the index's: {:?}",
        image.repo_digests
    );
}

#[tokio::test]
async fn missing_images_and_bad_references_are_clear_errors() {
    let (_server, mut client) = CriServer::start().await;
    let err = pull(
        &mut client,
        "registry.k8s.io/e2e-test-images/no-such-image:1",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        err.message()
            .contains("registry.k8s.io/e2e-test-images/no-such-image:1"),
        "{}",
        err.message()
    );

    for bad in [
        "",
        "Busybox",
        "a b",
        "busybox@sha256:short",
        "busybox::1",
        "-leading/dash",
    ] {
        let err = pull(&mut client, bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
        if !bad.is_empty() {
            assert!(
                err.message().contains(bad),
                "message names the image: {}",
                err.message()
            );
        }
    }
    let err = client
        .images
        .image_status(cri::ImageStatusRequest {
            image: None,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Undecodable credentials are the caller's error.
    let err = pull_with_auth(
        &mut client,
        BUSYBOX,
        Some(cri::AuthConfig {
            auth: "%%%not-base64".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    // Nothing was stored by any of it.
    assert!(list(&mut client).await.is_empty());
}

#[tokio::test]
async fn a_registry_that_is_down_is_unavailable_at_once() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let (_server, mut client) = CriServer::start_with(CriOptions {
        extra_hosts: vec![(host.clone(), format!("server = \"http://{host}\"\n"))],
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        pull(&mut client, &format!("{host}/busybox:1")),
    )
    .await;
    let err = result
        .expect("a refused connection must not hang the pull")
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains(&host), "{}", err.message());
    eprintln!("refused registry answered in {:?}", started.elapsed());
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_share_one_download() {
    let proxy = RegistryProxy::start(Mode::Pass).await;
    let (_server, client) = CriServer::start_with(CriOptions {
        extra_hosts: vec![("registry.k8s.io".into(), proxy.hosts_toml())],
        ..Default::default()
    })
    .await;
    let pulls = (0..4).map(|_| {
        let mut client = client.clone();
        async move { pull(&mut client, BUSYBOX).await }
    });
    let ids = futures::future::join_all(pulls).await;
    let ids: Vec<String> = ids.into_iter().map(|r| r.expect("pull")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]));
    assert_eq!(
        proxy.count("/manifests/"),
        1,
        "one manifest fetch for four pulls"
    );
    // One GET per blob: the config and the layer.
    assert_eq!(proxy.count("/blobs/"), 2, "one download per blob");
}

/// Runs a pull through a tampering proxy and checks it fails cleanly: the
/// given code, nothing named, no content or ingest left behind.
async fn pull_through(mode: Mode, progress_timeout: &'static str) -> (tonic::Status, CriServer) {
    let proxy = RegistryProxy::start(mode).await;
    let (server, mut client) = CriServer::start_with(CriOptions {
        extra_hosts: vec![("registry.k8s.io".into(), proxy.hosts_toml())],
        progress_timeout,
        ..Default::default()
    })
    .await;
    let err = tokio::time::timeout(Duration::from_secs(60), pull(&mut client, BUSYBOX))
        .await
        .expect("the pull ends")
        .unwrap_err();
    assert!(
        list(&mut client).await.is_empty(),
        "no image after a failed pull"
    );
    assert_eq!(server.ctr(&["images", "ls", "-q"]).trim(), "");
    assert_eq!(
        server.ctr(&["content", "active"]).lines().skip(1).count(),
        0,
        "no ingest left"
    );
    let layer_digest = {
        let text = reqwest::Client::new()
            .get(format!(
                "http://{REGISTRY}/v2/e2e-test-images/busybox/manifests/1.29-2"
            ))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        !server.ctr(&["content", "ls", "-q"]).contains(&layer_digest),
        "the bad layer was not committed"
    );
    drop(proxy);
    (err, server)
}

#[tokio::test]
async fn a_tampered_blob_fails_the_pull_and_leaves_nothing() {
    let (err, _server) = pull_through(Mode::CorruptBlobs, "30s").await;
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("digest mismatch"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(BUSYBOX),
        "names the image: {}",
        err.message()
    );
}

#[tokio::test]
async fn truncated_and_oversized_blobs_fail_the_pull() {
    let (err, _server) = pull_through(Mode::TruncateBlobs, "30s").await;
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("truncated"), "{}", err.message());
    let (err, _server) = pull_through(Mode::OversizeBlobs, "30s").await;
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("larger than"), "{}", err.message());
}

#[tokio::test]
async fn a_stalled_download_fails_after_the_progress_timeout() {
    let (err, server) = pull_through(Mode::StallBlobs, "2s").await;
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("no progress for 2s"),
        "{}",
        err.message()
    );
    drop(server);
}

#[tokio::test]
async fn a_pull_past_its_deadline_is_deadline_exceeded() {
    // The service is called in-process with the grpc-timeout header a Go
    // client sends: over a socket, tonic's client would race the server with
    // its own timer for the same deadline.
    use deckhand::cri::server::CriServer;
    use deckhand::cri::v1::image_service_server::ImageService;
    use deckhand::runtime::containerd::Containerd;
    use deckhand::runtime::image::{ImageManager, ImageManagerConfig};
    use deckhand::runtime::image_service::ImageRuntime;

    require_environment();
    let proxy = RegistryProxy::start(Mode::StallBlobs).await;
    let hosts = registry_config(&[("registry.k8s.io", &proxy.hosts_toml())]);
    let namespace = common::cleanup::test_namespace("deadline");
    // Removed however the test ends.
    let _namespace = common::cleanup::NamespaceGuard(namespace.clone());
    let containerd = Containerd::connect(std::path::Path::new(CONTAINERD_SOCKET), &namespace)
        .await
        .unwrap();
    let images = std::sync::Arc::new(ImageManager::new(
        containerd,
        ImageManagerConfig {
            snapshotter: "overlayfs".into(),
            snapshotter_root: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs".into(),
            registry_config_dir: hosts.path().to_path_buf(),
            connect_timeout: Duration::from_secs(5),
            progress_timeout: Duration::from_secs(30),
        },
    ));
    let service = CriServer::new(std::sync::Arc::new(ImageRuntime::new(images)));
    let mut request = tonic::Request::new(cri::PullImageRequest {
        image: image_spec(BUSYBOX),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("grpc-timeout", "500m".parse().unwrap());
    let started = std::time::Instant::now();
    // Room for a loaded host, still short of the 30 s progress timeout.
    let err = tokio::time::timeout(Duration::from_secs(25), service.pull_image(request))
        .await
        .expect("the deadline ends the call, long before the 30s progress timeout")
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains(BUSYBOX), "{}", err.message());
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the deadline"
    );
    drop(proxy);
    // The stalled download ends once the proxy is gone; then nothing is
    // left: the removal retries while the cut-off pull still holds a lease.
    remove_namespace(&namespace);
}

#[tokio::test]
async fn manifests_of_the_wrong_media_type_are_refused() {
    let schema1 = r#"{"schemaVersion":1,"name":"e2e-test-images/busybox","tag":"1.29-2","fsLayers":[],"history":[]}"#;
    for (body, content_type) in [
        (
            schema1,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        ("<html>hello</html>", "text/html"),
        (
            "{\"schemaVersion\":2",
            "application/vnd.oci.image.manifest.v1+json",
        ),
    ] {
        let (err, _server) = pull_through(
            Mode::Manifest {
                body: body.into(),
                content_type: content_type.into(),
            },
            "30s",
        )
        .await;
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{content_type}: {err:?}"
        );
        assert!(err.message().contains(BUSYBOX), "{}", err.message());
    }
}

/// A second registry, requiring htpasswd basic auth, with busybox in it.
struct AuthRegistry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    fn start() -> Self {
        let dir = common::cleanup::temp_dir();
        let port = free_port();
        let htpasswd = std::process::Command::new("htpasswd")
            .args(["-Bbn", "alice", "s3cret"])
            .output()
            .expect("htpasswd (apache2-utils)");
        std::fs::write(dir.path().join("htpasswd"), htpasswd.stdout).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test\n    path: {root}/htpasswd\n",
            root = dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry");
        // Killed on drop from here on, also when a step below fails.
        let registry = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not listen on {port} within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let copied = std::process::Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .args(["--dest-creds", "alice:s3cret"])
            .arg(format!(
                "docker://{REGISTRY}/e2e-test-images/busybox:1.29-2"
            ))
            .arg(format!("docker://127.0.0.1:{port}/private/busybox:1"))
            .status()
            .unwrap();
        assert!(copied.success(), "skopeo copy into the auth registry");
        registry
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn basic_auth_from_the_request_auth_config() {
    let registry = AuthRegistry::start();
    let host = format!("127.0.0.1:{}", registry.port);
    let image = format!("{host}/private/busybox:1");
    let (_server, mut client) = CriServer::start_with(CriOptions {
        extra_hosts: vec![(host.clone(), format!("server = \"http://{host}\"\n"))],
        ..Default::default()
    })
    .await;

    let err = pull(&mut client, &image).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Unauthenticated,
        "anonymous: {err:?}"
    );
    let wrong = cri::AuthConfig {
        username: "alice".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = pull_with_auth(&mut client, &image, Some(wrong))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Unauthenticated,
        "wrong password: {err:?}"
    );
    assert!(
        !err.message().contains("wrong"),
        "no secret in messages: {}",
        err.message()
    );

    let right = cri::AuthConfig {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let id = pull_with_auth(&mut client, &image, Some(right))
        .await
        .expect("pull with basic auth");
    remove(&mut client, &id).await.unwrap();
    // The `auth` field (base64 of user:password) works the same.
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let auth = cri::AuthConfig {
        auth: encoded,
        ..Default::default()
    };
    let again = pull_with_auth(&mut client, &image, Some(auth))
        .await
        .expect("pull with auth field");
    assert_eq!(again, id);
}

#[tokio::test]
async fn images_are_shared_with_containerd_and_its_cri_plugin() {
    // The one test in containerd's k8s.io namespace, where its CRI plugin looks.
    let image = "gcr.io/k8s-staging-cri-tools/test-image-tag:all";
    let (_server, mut client) = CriServer::start_with(CriOptions {
        namespace: Some("k8s.io".into()),
        ..Default::default()
    })
    .await;
    let id = pull(&mut client, image).await.unwrap();
    let names = ctr("k8s.io", &["images", "ls", "-q"]);
    assert!(
        names.lines().any(|n| n == image),
        "ctr sees {image}:\n{names}"
    );

    // containerd's own CRI plugin answers for it on containerd's socket.
    let mut containerd_cri =
        deckhand::cri::client::connect(std::path::Path::new(CONTAINERD_SOCKET))
            .await
            .unwrap();
    let seen = status(&mut containerd_cri, image).await;
    let seen = seen.expect("containerd's CRI plugin sees the image");
    assert_eq!(seen.id, id);

    remove(&mut client, image).await.unwrap();
    let names = ctr("k8s.io", &["images", "ls", "-q"]);
    assert!(!names.lines().any(|n| n == image), "gone for ctr too");
}

#[tokio::test]
async fn image_fs_info_reports_real_usage() {
    let (_server, mut client) = CriServer::start().await;
    let before = fs_used(&mut client).await;
    pull(&mut client, BUSYBOX).await.unwrap();
    let after = fs_used(&mut client).await;
    assert!(
        after.0 > before.0 + 500_000,
        "bytes grew: {before:?} -> {after:?}"
    );
    // The test busybox links its applets to one binary (hard links, as the
    // upstream image does), so the unpacked tree is a few dozen inodes.
    assert!(
        after.1 > before.1 + 10,
        "inodes grew: {before:?} -> {after:?}"
    );
}

async fn fs_used(client: &mut deckhand::cri::client::CriClient) -> (u64, u64) {
    let info = client
        .images
        .image_fs_info(cri::ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    let fs = &info.image_filesystems[0];
    assert!(fs.fs_id.as_ref().unwrap().mountpoint.contains("overlayfs"));
    (
        fs.used_bytes.as_ref().unwrap().value,
        fs.inodes_used.as_ref().unwrap().value,
    )
}

#[tokio::test]
async fn bearer_token_auth_with_basic_credentials_or_a_refresh_token() {
    let proxy = RegistryProxy::start(Mode::Token).await;
    let (_server, mut client) = CriServer::start_with(CriOptions {
        extra_hosts: vec![("registry.k8s.io".into(), proxy.hosts_toml())],
        ..Default::default()
    })
    .await;
    let err = pull(&mut client, BUSYBOX).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Unauthenticated,
        "anonymous: {err:?}"
    );
    assert!(proxy.count("/token") >= 1, "asked the token server");

    let basic = cri::AuthConfig {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let id = pull_with_auth(&mut client, BUSYBOX, Some(basic))
        .await
        .expect("token from basic credentials");
    remove(&mut client, &id).await.unwrap();

    let refresh = cri::AuthConfig {
        username: "alice".into(),
        identity_token: "refresh-1".into(),
        ..Default::default()
    };
    pull_with_auth(&mut client, BUSYBOX, Some(refresh))
        .await
        .expect("token from a refresh token");
    remove(&mut client, &id).await.unwrap();

    let token = cri::AuthConfig {
        registry_token: common::registry_proxy::TOKEN.into(),
        ..Default::default()
    };
    let before = proxy.count("/token");
    pull_with_auth(&mut client, BUSYBOX, Some(token))
        .await
        .expect("a registry token as it is");
    assert_eq!(
        proxy.count("/token"),
        before,
        "a registry token needs no token server"
    );
}

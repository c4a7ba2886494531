//! CRI request validation: the fields that become host paths (log paths,
//! log directories) and lines of files deckhand writes (resolv.conf, hosts,
//! hostname), and CreateContainer's whole-config checks.

use std::path::{Component, Path};

use proptest::prelude::*;

use deckhand::cri::v1 as cri;
use deckhand::runtime::container::request_checks;
use deckhand::runtime::sandbox::files;
use deckhand::runtime::validate;

use crate::{bounded, config, tricky_text};

fn path_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "..", ".", "", "/", "//", "a", "log", "0.log", "\0", "~", "\\.."
            ])
            .prop_map(str::to_string),
            tricky_text(2),
        ],
        0..6,
    )
    .prop_map(|parts| parts.join("/"))
}

fn ip_or_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        tricky_text(4),
        (any::<std::net::Ipv4Addr>(), tricky_text(3)).prop_map(|(ip, s)| format!("{ip}{s}")),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// A log path that passes stays below the log directory, whatever it
    /// spells; one that escapes is refused.
    #[test]
    fn fuzz_cri_log_path(path in path_text()) {
        let dir = Path::new("/var/log/pods/ns_pod_uid");
        let result = bounded("log path", move || request_checks::log_file(dir, &path).map_err(|e| e.to_string()));
        if let Ok(file) = result {
            prop_assert!(file.starts_with(dir), "{}", file.display());
            prop_assert!(file != dir);
            prop_assert!(!file.components().any(|c| c == Component::ParentDir), "{}", file.display());
        }
    }

    /// A log directory that passes is absolute and climbs nowhere.
    #[test]
    fn fuzz_cri_log_directory(path in path_text()) {
        if let Ok(dir) = validate::absolute_path("log_directory", &path) {
            prop_assert!(dir.is_absolute());
            prop_assert!(!dir.components().any(|c| c == Component::ParentDir));
            prop_assert!(!path.contains('\0'));
        }
    }

    /// resolv.conf from fields the sandbox checks accept has one line per
    /// server, at most one search and one options line, and nothing else.
    #[test]
    fn fuzz_cri_dns_config(
        servers in prop::collection::vec(ip_or_junk(), 0..4),
        searches in prop::collection::vec(tricky_text(3), 0..4),
        options in prop::collection::vec(tricky_text(3), 0..4),
    ) {
        let accepted = servers.iter().all(|s| s.parse::<std::net::IpAddr>().is_ok())
            && searches.iter().all(|s| validate::config_word("dns search", s).is_ok())
            && options.iter().all(|s| validate::config_word("dns option", s).is_ok());
        if !accepted {
            return Ok(());
        }
        let dns = cri::DnsConfig { servers: servers.clone(), searches: searches.clone(), options: options.clone() };
        let Some(text) = files::resolv_conf(Some(&dns)) else {
            prop_assert!(servers.is_empty() && searches.is_empty() && options.is_empty());
            return Ok(());
        };
        let lines: Vec<&str> = text.lines().collect();
        let expected = servers.len() + usize::from(!searches.is_empty()) + usize::from(!options.is_empty());
        prop_assert_eq!(lines.len(), expected, "{:?}", text);
        prop_assert_eq!(lines.iter().filter(|l| l.starts_with("nameserver ")).count(), servers.len());
        for line in lines {
            prop_assert!(!line.contains(['\r', '\0', '#', ';']), "{:?}", line);
        }
    }

    /// A hostname the sandbox accepts is one word: the hosts file and the
    /// hostname file it goes into get no line, field or comment of its own.
    #[test]
    fn fuzz_cri_hostname(name in tricky_text(4)) {
        if files::valid_hostname(&name) {
            prop_assert!(!name.chars().any(|c| c.is_control() || c.is_whitespace() || c == '#'), "{:?}", name);
            let hosts = files::hosts(&name, &["10.0.0.2".to_string()]);
            prop_assert!(hosts.lines().all(|l| !l.starts_with('#') || l.is_empty()));
        }
    }

    /// Names kept in records: accepted ones have no '/' or control
    /// character; configuration words have no whitespace.
    #[test]
    fn fuzz_cri_names(value in tricky_text(5)) {
        if validate::plain_name("name", &value).is_ok() {
            prop_assert!(!value.contains('/') && !value.chars().any(char::is_control));
        }
        if validate::config_word("word", &value).is_ok() {
            prop_assert!(!value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control()));
        }
        if let Ok(p) = validate::path_within("path", &value) {
            prop_assert!(p.is_relative() && !p.components().any(|c| c == Component::ParentDir));
        }
    }

    /// CreateContainer's config checks on random fields: Ok or
    /// InvalidArgument, never a panic.
    #[test]
    fn fuzz_cri_container_config(
        log_path in path_text(),
        env in prop::collection::vec((tricky_text(2), tricky_text(2)), 0..3),
        args in prop::collection::vec(tricky_text(2), 0..3),
        mounts in prop::collection::vec((path_text(), path_text()), 0..3),
        devices in prop::collection::vec((path_text(), path_text(), tricky_text(2)), 0..2),
        uid in prop::option::of(any::<i64>()),
    ) {
        let config = cri::ContainerConfig {
            log_path,
            envs: env.into_iter().map(|(key, value)| cri::KeyValue { key, value: value.into_bytes() }).collect(),
            args,
            mounts: mounts.into_iter().map(|(container_path, host_path)| cri::Mount { container_path, host_path, ..Default::default() }).collect(),
            devices: devices.into_iter().map(|(container_path, host_path, permissions)| cri::Device { container_path, host_path, permissions }).collect(),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    run_as_user: uid.map(|value| cri::Int64Value { value }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let result = bounded("container config", move || request_checks::check(&config).map_err(|e| e.to_string()));
        if let Err(message) = result {
            prop_assert!(!message.is_empty());
        }
    }
}

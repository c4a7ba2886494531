//! The process's argv and environment: image config merged with the request.

use super::*;

/// The process's argv: the request's command replaces the image entrypoint
/// (and then the image cmd is dropped); the request's args replace the cmd.
pub fn process_args(
    config: &cri::ContainerConfig,
    image: &ExecConfig,
) -> Result<Vec<String>, SpecError> {
    let mut args: Vec<String> = if !config.command.is_empty() {
        config.command.clone()
    } else {
        image.entrypoint.clone().unwrap_or_default()
    };
    if !config.args.is_empty() {
        args.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        args.extend(image.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err(invalid(
            "no command specified: neither the request nor the image gives one",
        ));
    }
    Ok(args)
}

/// Image env first, then the request's, a later key replacing an earlier one.
/// CRI carries values as bytes; an OCI spec holds strings, so a value that is
/// not UTF-8 is refused rather than mangled.
pub fn process_env(
    config: &cri::ContainerConfig,
    image: &ExecConfig,
    hostname: &str,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_string();
        match index.get(&key) {
            Some(&i) => env[i] = entry,
            None => {
                index.insert(key, env.len());
                env.push(entry);
            }
        }
    };
    set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    if !hostname.is_empty() {
        set(format!("HOSTNAME={hostname}"));
    }
    for entry in image.env.iter().flatten() {
        set(entry.clone());
    }
    for kv in &config.envs {
        let value = std::str::from_utf8(&kv.value).map_err(|_| {
            invalid(format!(
                "environment variable {:?} is not valid UTF-8",
                kv.key
            ))
        })?;
        set(format!("{}={value}", kv.key));
    }
    Ok(env)
}

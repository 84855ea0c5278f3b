//! Naming rules: which application a command line runs. Pure functions of
//! argv (untrusted: every name is cleaned and capped by [`clean`]). The
//! README's "Service names" table lists these rules; keep the two in step.

use std::path::Path;

/// Longest service name taken from a command line or environment.
pub const MAX_NAME: usize = 128;

/// Printable characters only (no control or format characters), trimmed,
/// at most MAX_NAME characters; `None` when nothing is left.
pub fn clean(s: &str) -> Option<String> {
    let s: String = s.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The last path component (`/usr/bin/redis-server` -> `redis-server`).
pub fn basename(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}

/// What a Java command line says about OpenTelemetry (`-D` system properties
/// before the main class or jar).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JavaProps {
    pub service_name: Option<String>,
    pub resource_attributes: Option<String>,
}

/// The application `argv` runs when argv[0] is an interpreter or an
/// application server this module knows; `None` otherwise.
pub fn app_name(argv: &[String]) -> Option<String> {
    let prog = basename(argv.first()?);
    let rest = &argv[1..];
    let name = if is_python(prog) {
        python(rest)
    } else if prog == "node" || prog == "nodejs" {
        node(rest)
    } else if prog == "java" {
        java(rest).0
    } else if matches!(prog, "gunicorn" | "uvicorn") {
        Some(wsgi_app(rest).unwrap_or(prog).to_string())
    } else if prog == "uwsgi" {
        uwsgi(rest)
    } else {
        None
    };
    name.and_then(|n| clean(&n))
}

/// `-Dotel.service.name=` and `-Dotel.resource.attributes=` of a java command line.
pub fn java_props(argv: &[String]) -> JavaProps {
    match argv.first() {
        Some(a) if basename(a) == "java" => java(&argv[1..]).1,
        _ => JavaProps::default(),
    }
}

/// python, python3, python3.11, pypy3...
fn is_python(p: &str) -> bool {
    let v = p.strip_prefix("python").or_else(|| p.strip_prefix("pypy"));
    v.is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// `python [opts] script.py`, `python -m module`, with app servers started
/// through their console script or module seen through.
fn python(args: &[String]) -> Option<String> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "-m" {
            return module_app(args.get(i + 1)?, &args[i + 2..]);
        }
        if let Some(m) = a.strip_prefix("-m").filter(|m| !m.is_empty() && !a.starts_with("--")) {
            return module_app(m, &args[i + 1..]);
        }
        if a == "-c" || a == "-" || (a.starts_with("-c") && !a.starts_with("--")) {
            return None;
        }
        if matches!(a, "-W" | "-X" | "--check-hash-based-pycs") {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        let stem = script_stem(a, &[".py", ".pyw", ".pyz"]);
        return match stem.as_str() {
            "gunicorn" | "uvicorn" => Some(wsgi_app(&args[i + 1..]).unwrap_or(&stem).to_string()),
            _ => Some(stem),
        };
    }
    None
}

fn module_app(module: &str, rest: &[String]) -> Option<String> {
    match module {
        "gunicorn" | "uvicorn" => Some(wsgi_app(rest).unwrap_or(module).to_string()),
        m => Some(m.to_string()),
    }
}

/// gunicorn/uvicorn `[OPTIONS] APP_MODULE`: the module of `module:variable`
/// (a Django project's `proj.wsgi:application` names `proj`).
fn wsgi_app(args: &[String]) -> Option<&str> {
    // Options that take no value; every other option takes the next word.
    const FLAGS: &[&str] = &[
        "--reload",
        "--preload",
        "-D",
        "--daemon",
        "-R",
        "--enable-stdio-inheritance",
        "--capture-output",
        "--check-config",
        "--print-config",
        "--spew",
        "--no-sendfile",
        "--reuse-port",
        "--strip-header-spaces",
        "--proxy-headers",
        "--no-proxy-headers",
        "--factory",
        "--no-access-log",
        "--use-colors",
        "--no-use-colors",
        "--server-header",
        "--no-server-header",
        "--date-header",
        "--no-date-header",
        "--no-control-socket",
    ];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a.starts_with('-') {
            i += if a.contains('=') || FLAGS.contains(&a) { 1 } else { 2 };
            continue;
        }
        let module = a.split(':').next().unwrap_or(a);
        let module = module.strip_suffix(".wsgi").or_else(|| module.strip_suffix(".asgi")).unwrap_or(module);
        return (!module.is_empty()).then_some(module);
    }
    None
}

/// uwsgi `--module/-w mod[:callable]` or `--wsgi-file/--file app.py`.
fn uwsgi(args: &[String]) -> Option<String> {
    let mut it = args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        let (opt, inline) = a.split_once('=').map_or((a, None), |(o, v)| (o, Some(v)));
        let value =
            |it: &mut dyn Iterator<Item = &str>| inline.map(str::to_string).or_else(|| it.next().map(str::to_string));
        match opt {
            "--module" | "-w" | "--wsgi" => {
                let v = value(&mut it)?;
                return Some(v.split(':').next().unwrap_or(&v).to_string());
            }
            "--wsgi-file" | "--file" => return Some(script_stem(&value(&mut it)?, &[".py"])),
            _ => {}
        }
    }
    None
}

/// `node [opts] script.js`: the script's name; an `index.js` or `main.js`
/// is named after its folder.
fn node(args: &[String]) -> Option<String> {
    const VALUED: &[&str] =
        &["-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions", "--title"];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if matches!(a, "-e" | "--eval" | "-p" | "--print" | "-" | "-i" | "--interactive") {
            return None;
        }
        if a == "--" {
            i += 1;
            break;
        }
        if a.starts_with('-') {
            i += if VALUED.contains(&a) { 2 } else { 1 };
            continue;
        }
        break;
    }
    let script = args.get(i)?;
    let stem = script_stem(script, &[".js", ".mjs", ".cjs", ".ts"]);
    if matches!(stem.as_str(), "index" | "main") {
        let parent = Path::new(script).parent().and_then(|p| p.file_name()).map(|p| p.to_string_lossy().into_owned());
        if let Some(p) = parent.filter(|p| !matches!(p.as_str(), "src" | "dist" | "lib" | "build" | "." | "..")) {
            return Some(p);
        }
    }
    Some(stem)
}

/// `java [opts] -jar app.jar`, `java [opts] -m module/class`,
/// `java [opts] pkg.Main` or `java Main.java`; with the OpenTelemetry
/// system properties met on the way.
fn java(args: &[String]) -> (Option<String>, JavaProps) {
    const VALUED: &[&str] = &[
        "-cp",
        "-classpath",
        "--class-path",
        "-p",
        "--module-path",
        "--upgrade-module-path",
        "--add-modules",
        "--limit-modules",
        "--add-reads",
        "--add-exports",
        "--add-opens",
        "--patch-module",
        "--source",
        "--enable-native-access",
    ];
    let mut props = JavaProps::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if let Some(v) = a.strip_prefix("-Dotel.service.name=") {
            props.service_name = clean(v);
        } else if let Some(v) = a.strip_prefix("-Dotel.resource.attributes=") {
            props.resource_attributes = Some(v.to_string());
        } else if a == "-jar" {
            return (args.get(i + 1).map(|j| script_stem(j, &[".jar", ".war"])), props);
        } else if a == "-m" || a == "--module" {
            let m = args.get(i + 1).map(|m| m.split('/').next().unwrap_or(m).to_string());
            return (m, props);
        } else if VALUED.contains(&a) {
            i += 1;
        } else if !a.starts_with('-') && !a.starts_with('@') {
            return (Some(script_stem(a, &[".java"])), props);
        }
        i += 1;
    }
    (None, props)
}

/// The file name without its directory and its (listed) extension.
fn script_stem(path: &str, exts: &[&str]) -> String {
    let mut p = Path::new(path.trim_end_matches('/'));
    let mut name = basename(path).to_string();
    // `python pkg/__main__.py` and `python pkg/` run the package.
    if name == "__main__.py" {
        p = p.parent().unwrap_or(p);
        name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name);
    }
    for e in exts {
        if let Some(s) = name.strip_suffix(e).filter(|s| !s.is_empty()) {
            return s.to_string();
        }
    }
    name
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;

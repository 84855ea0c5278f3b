use super::*;

fn argv(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

/// (command line, expected name): one row per rule and edge.
const CASES: &[(&str, Option<&str>)] = &[
    ("python3 app.py", Some("app")),
    ("/usr/bin/python3.11 -u -X dev /srv/api/app.py --port 8000", Some("app")),
    ("python3 -m http.server 8000", Some("http.server")),
    ("python3 -mhttp.server", Some("http.server")),
    ("python3 -c print(1)", None),
    ("python3 pkg/__main__.py", Some("pkg")),
    ("/usr/bin/python3 /usr/local/bin/gunicorn -w 2 -b 127.0.0.1:8000 app:app", Some("app")),
    ("python3 -m gunicorn --reload myproj.wsgi:application", Some("myproj")),
    ("gunicorn --bind=0.0.0.0:80 shop.main:create_app()", Some("shop.main")),
    ("/usr/bin/python3 /usr/local/bin/gunicorn -c gunicorn.conf.py", Some("gunicorn")),
    ("uvicorn api:app --port 9000", Some("api")),
    ("uwsgi --http :8000 --module blog.wsgi:application", Some("blog.wsgi")),
    ("uwsgi --http=:8000 --wsgi-file /srv/app.py", Some("app")),
    ("node app.js", Some("app")),
    ("node --require ./tracing.js -e 1", None),
    ("node -r ./otel.js /srv/checkout/index.js", Some("checkout")),
    ("node dist/main.js", Some("main")),
    ("java -jar app.jar", Some("app")),
    ("java -Xmx512m -cp lib/a.jar:lib/b.jar com.example.Main arg", Some("com.example.Main")),
    ("java Main", Some("Main")),
    ("java --module-path mods -m shop.api/shop.api.Main", Some("shop.api")),
    ("java Hello.java", Some("Hello")),
    ("/usr/sbin/nginx -c /etc/nginx.conf", None),
    ("redis-server /etc/redis.conf", None),
];

#[test]
fn names_the_application() {
    for (cmd, want) in CASES {
        assert_eq!(app_name(&argv(cmd)).as_deref(), *want, "{cmd}");
    }
}

#[test]
fn java_system_properties() {
    let p =
        java_props(&argv("java -Dotel.service.name=orders -Dotel.resource.attributes=service.version=2 -jar x.jar"));
    assert_eq!(p.service_name.as_deref(), Some("orders"));
    assert_eq!(p.resource_attributes.as_deref(), Some("service.version=2"));
    // After the main class, -D is the application's argument, not the JVM's.
    assert_eq!(java_props(&argv("java Main -Dotel.service.name=x")).service_name, None);
    assert_eq!(java_props(&argv("python3 -Dotel.service.name=x")).service_name, None);
}

#[test]
fn names_from_argv_are_cleaned_and_capped() {
    assert_eq!(clean("a\u{1b}[31mb\n"), Some("a[31mb".into()));
    assert_eq!(clean(" \t "), None);
    assert_eq!(clean(&"x".repeat(1000)).unwrap().len(), MAX_NAME);
    let hostile = vec!["python3".to_string(), format!("{}\u{7}.py", "y".repeat(500))];
    let n = app_name(&hostile).unwrap();
    assert!(n.len() <= MAX_NAME && !n.chars().any(char::is_control));
}

//! The dashboard's page, script and style, compiled into the binary: no
//! CDN, no build step, nothing to install beside the executable.

use crate::gateway::Answer;

const PAGE: &str = include_str!("static/index.html");
const SCRIPT: &str = include_str!("static/dashboard.js");
const STYLE: &str = include_str!("static/dashboard.css");

fn asset(content_type: &'static str, body: &'static str) -> Answer {
    let mut a = Answer::new(200, content_type, body);
    a.headers.push(("cache-control", "no-cache".to_owned()));
    // The page runs only its own script and style, and no other site may
    // frame it.
    a.headers.push((
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'".to_owned(),
    ));
    a.headers
        .push(("x-content-type-options", "nosniff".to_owned()));
    a
}

/// `GET /`.
pub fn page() -> Answer {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard.js`.
pub fn script() -> Answer {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard.css`.
pub fn style() -> Answer {
    asset("text/css; charset=utf-8", STYLE)
}

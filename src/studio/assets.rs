//! The page's files, embedded in the binary: nothing is fetched from anywhere at run time.

/// The one page; `{{TOKEN}}` is replaced by the session token, which its script sends in the
/// `X-DFL-Token` header of every request that changes something.
pub const INDEX_HTML: &str = include_str!("../../assets/studio/index.html");

/// The scripts and style sheets under `/assets/`: the shell (`app.*`, the overview and the
/// training monitor) and one pair per page that needs more.
const FILES: [(&str, &str); 8] = [
    ("app.js", include_str!("../../assets/studio/app.js")),
    ("app.css", include_str!("../../assets/studio/app.css")),
    ("faces.js", include_str!("../../assets/studio/faces.js")),
    ("faces.css", include_str!("../../assets/studio/faces.css")),
    ("labeller.js", include_str!("../../assets/studio/labeller.js")),
    ("labeller.css", include_str!("../../assets/studio/labeller.css")),
    ("tuner.js", include_str!("../../assets/studio/tuner.js")),
    ("tuner.css", include_str!("../../assets/studio/tuner.css")),
];

/// The embedded file `name` with its content type.
pub fn file(name: &str) -> Option<(&'static str, &'static str)> {
    let (_, body) = FILES.iter().find(|(n, _)| *n == name)?;
    let kind = if name.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else {
        "text/css; charset=utf-8"
    };
    Some((body, kind))
}

/// The content security policy of every page: its own script and style only, images from the
/// studio itself (and blobs the labeller makes).
pub const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

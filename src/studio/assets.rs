//! The page's files, embedded in the binary: nothing is fetched from anywhere at run time.

/// The one page; `{{TOKEN}}` is replaced by the session token, which its script sends in the
/// `X-DFL-Token` header of every request that changes something.
pub const INDEX_HTML: &str = include_str!("../../assets/studio/index.html");
/// The page's script.
pub const APP_JS: &str = include_str!("../../assets/studio/app.js");
/// The page's style sheet.
pub const APP_CSS: &str = include_str!("../../assets/studio/app.css");

/// The content security policy of every page: its own script and style only, images from the
/// studio itself (and blobs the labeller makes).
pub const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

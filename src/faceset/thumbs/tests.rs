//! The thumbnail cache's behaviour, and its benchmark.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opencv::core::{self as cv, Mat, Scalar, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

use super::files::STALE_TMP_SECS;
use super::image::{decode_flags, is_whole_jpeg, jpeg_size, make_thumb_decoded_with};
use super::index::Index;
use super::*;
use crate::face::testutil::write_faceset;
use crate::img::encode;
use crate::img::read_image;
use crate::progress::NoProgress;

/// A faceset folder `aligned/` of `n` synthetic 256 px PNG faces and a cache folder.
fn faceset(n: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let faces = tmp.path().join("aligned");
    std::fs::create_dir(&faces).unwrap();
    write_faceset(&faces, n, 256, |i| i as f64 * 0.05);
    (tmp, faces.clone(), faces.with_file_name("thumbs"))
}

fn open(faces: &Path, cache: &Path) -> ThumbCache {
    ThumbCache::open(faces, cache, ThumbOptions::default()).unwrap()
}

/// Dates the files of `dir` written in the last minute an hour back, as faces extracted
/// before this session are: the index trusts their times.
fn settle(dir: &Path) {
    let (now, minute) = (SystemTime::now(), Duration::from_secs(60));
    for entry in std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().is_file()) {
        if entry.metadata().unwrap().modified().unwrap() > now - minute {
            let file = std::fs::File::options().write(true).open(entry.path()).unwrap();
            file.set_modified(now - 60 * minute).unwrap();
        }
    }
}

fn thumb_count(cache: &ThumbCache) -> usize {
    cache.present_keys().len()
}

fn decode(bytes: &[u8]) -> Mat {
    imgcodecs::imdecode(&Vector::from_slice(bytes), imgcodecs::IMREAD_COLOR).unwrap()
}

/// The mean absolute difference of `thumb` from `original` shrunk to its size.
fn difference(thumb: &Mat, original: &Mat) -> f64 {
    let mut small = Mat::default();
    imgproc::resize(original, &mut small, thumb.size().unwrap(), 0.0, 0.0, imgproc::INTER_AREA)
        .unwrap();
    let mut diff = Mat::default();
    cv::absdiff(thumb, &small, &mut diff).unwrap();
    let mean: Scalar = cv::mean(&diff, &cv::no_array()).unwrap();
    (mean[0] + mean[1] + mean[2]) / 3.0
}

/// Writes `image` as `name` (JPEG or PNG by the name) without metadata.
fn write_plain(dir: &Path, name: &str, image: &Mat) {
    let ext = Path::new(name).extension().unwrap().to_str().unwrap();
    std::fs::write(dir.join(name), encode(image, ext, 95).unwrap()).unwrap();
}

#[test]
fn the_listing_is_by_name_and_reads_no_file() {
    let (tmp, faces, _) = faceset(3);
    std::fs::copy(faces.join("face_002.png"), faces.join("0_copy.png")).unwrap();
    std::fs::write(faces.join("notes.txt"), b"x").unwrap();
    std::fs::write(faces.join("face_003.jpg.tmp"), b"half written").unwrap();
    std::fs::create_dir(faces.join("sub")).unwrap();
    std::fs::copy(faces.join("face_000.png"), faces.join("sub/inner.png")).unwrap();
    std::fs::write(faces.join("junk.JPG"), b"not an image, still listed").unwrap();

    let files = list_faces(&faces).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["0_copy.png", "face_000.png", "face_001.png", "face_002.png", "junk.JPG"]);
    for f in &files {
        let meta = std::fs::metadata(faces.join(&f.name)).unwrap();
        assert_eq!(*f, FaceFile::new(f.name.clone(), &meta));
        assert_eq!(f.size, meta.len());
        let mtime = meta.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(u128::from(f.mtime_ns), mtime.as_nanos());
    }
    let inodes: HashSet<u64> = files.iter().map(|f| f.inode).collect();
    assert_eq!(inodes.len(), files.len(), "one inode per file");
    assert!(inodes.iter().all(|&i| i != 0), "{inodes:?}");
    let missing = list_faces(&tmp.path().join("nope")).unwrap_err();
    assert!(matches!(missing, ThumbError::Faceset(FacesetError::Missing(_))), "{missing}");
}

#[test]
fn build_makes_one_thumbnail_per_face_of_the_right_size() {
    let (_tmp, faces, cache_dir) = faceset(2);
    let face = read_image(&faces.join("face_000.png")).unwrap();
    write_plain(&faces, "jpeg.jpg", &face);
    let mut wide = Mat::default();
    imgproc::resize(&face, &mut wide, Size::new(300, 200), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    write_plain(&faces, "wide.png", &wide);
    let mut small = Mat::default();
    imgproc::resize(&face, &mut small, Size::new(64, 64), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    write_plain(&faces, "small.jpg", &small);
    settle(&faces);

    let cache = open(&faces, &cache_dir);
    let report = cache.build(&NoProgress).unwrap();
    assert_eq!((report.faces, report.built, report.hashed), (5, 5, 5), "{report:?}");
    assert!(report.failed.is_empty() && report.vanished == 0, "{report:?}");
    assert_eq!(thumb_count(&cache), 5);
    let want = [
        ("face_000.png", (128, 128)),
        ("face_001.png", (128, 128)),
        ("jpeg.jpg", (128, 128)),
        ("small.jpg", (64, 64)),
        ("wide.png", (128, 85)),
    ];
    for (name, (width, height)) in want {
        let thumb = decode(&cache.get(name).unwrap());
        assert_eq!((thumb.cols(), thumb.rows()), (width, height), "{name}");
        let original = read_image(&faces.join(name)).unwrap();
        let diff = difference(&thumb, &original);
        assert!(diff < 4.0, "{name}: the thumbnail is not the face shrunk ({diff})");
    }
    let again = open(&faces, &cache_dir).build(&NoProgress).unwrap();
    assert_eq!((again.built, again.hashed), (0, 0), "{again:?}");
    for entry in cache.lookup().unwrap() {
        let bytes = std::fs::read(faces.join(&entry.file.name)).unwrap();
        assert_eq!(entry.key, Some(content_key(&bytes)));
        assert!(entry.has_thumb);
    }
}

#[test]
fn jpegs_are_decoded_at_the_smallest_size_that_covers_the_thumbnail() {
    let black = |side| {
        let m = Mat::new_rows_cols_with_default(side, side, cv::CV_8UC3, Scalar::all(0.0));
        encode(&m.unwrap(), "jpg", 90).unwrap()
    };
    let (j256, j512, j100) = (black(256), black(512), black(100));
    assert_eq!(jpeg_size(&j256), Some((256, 256)));
    assert_eq!(decode_flags(&j256, 128), imgcodecs::IMREAD_REDUCED_COLOR_2);
    assert_eq!(decode_flags(&j512, 128), imgcodecs::IMREAD_REDUCED_COLOR_4);
    assert_eq!(decode_flags(&j512, 64), imgcodecs::IMREAD_REDUCED_COLOR_8);
    assert_eq!(decode_flags(&j256, 200), imgcodecs::IMREAD_COLOR);
    assert_eq!(decode_flags(&j100, 128), imgcodecs::IMREAD_COLOR);
    assert_eq!(decode_flags(b"\x89PNG\r\n", 128), imgcodecs::IMREAD_COLOR);
    assert_eq!(jpeg_size(&j100[..20]), None, "a cut header");
}

#[test]
fn a_renamed_face_keeps_its_thumbnail_without_being_read() {
    let (_tmp, faces, cache_dir) = faceset(3);
    settle(&faces);
    let cache = open(&faces, &cache_dir);
    assert_eq!(cache.build(&NoProgress).unwrap().built, 3);
    let before = cache.get("face_001.png").unwrap();
    std::fs::rename(faces.join("face_001.png"), faces.join("00009_face.png")).unwrap();

    let cache = open(&faces, &cache_dir); // as another process would
    let report = cache.build(&NoProgress).unwrap();
    assert_eq!((report.built, report.hashed), (0, 0), "{report:?}");
    assert_eq!(thumb_count(&cache), 3);
    assert_eq!(cache.get("00009_face.png").unwrap(), before);

    // A copy is another file: read for its key, which has its thumbnail already.
    std::fs::copy(faces.join("face_002.png"), faces.join("copy.png")).unwrap();
    settle(&faces);
    let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
    assert_eq!((report.built, report.hashed), (0, 1), "{report:?}");
}

#[test]
fn an_edited_face_gets_a_new_thumbnail_and_prune_drops_the_old() {
    let (_tmp, faces, cache_dir) = faceset(3);
    settle(&faces);
    let cache = open(&faces, &cache_dir);
    cache.build(&NoProgress).unwrap();
    let before = cache.get("face_000.png").unwrap();
    let mut flipped = Mat::default();
    cv::flip(&read_image(&faces.join("face_000.png")).unwrap(), &mut flipped, 1).unwrap();
    // Rewritten in place (same inode), then dated like the others.
    write_plain(&faces, "face_000.png", &flipped);
    settle(&faces);

    let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
    assert_eq!((report.built, report.hashed), (1, 1), "{report:?}");
    let after = cache.get("face_000.png").unwrap();
    assert_ne!(after, before);
    assert!(difference(&decode(&after), &flipped) < 4.0, "the thumbnail shows the edit");
    assert_eq!(thumb_count(&cache), 4, "the old thumbnail stays until pruned");
    let pruned = cache.prune().unwrap();
    assert_eq!(pruned.removed, 1, "{pruned:?}");
    assert_eq!(pruned.bytes, before.len() as u64);
    assert_eq!(thumb_count(&cache), 3);
    assert_eq!(cache.prune().unwrap(), PruneReport::default());
}

#[test]
fn prune_keeps_what_another_faceset_uses_and_stale_temporaries_go() {
    let (tmp, faces, cache_dir) = faceset(3);
    let trash = tmp.path().join("aligned_trash");
    std::fs::create_dir(&trash).unwrap();
    settle(&faces);
    let cache = open(&faces, &cache_dir);
    cache.build(&NoProgress).unwrap();
    std::fs::rename(faces.join("face_002.png"), trash.join("face_002.png")).unwrap();
    let trash_cache = open(&trash, &cache_dir);
    assert_eq!(trash_cache.build(&NoProgress).unwrap().built, 0, "shared by content");
    let stale = cache_dir.join("128px_q85/x.jpg.1-2.tmp");
    let fresh = cache_dir.join("128px_q85/y.jpg.1-2.tmp");
    std::fs::write(&stale, b"x").unwrap();
    std::fs::write(&fresh, b"y").unwrap();
    let file = std::fs::File::options().write(true).open(&stale).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(STALE_TMP_SECS + 60)).unwrap();

    assert_eq!(cache.prune().unwrap().removed, 1, "only the stale temporary");
    assert!(!stale.exists() && fresh.exists());
    assert_eq!(thumb_count(&cache), 3, "the trash face keeps its thumbnail");
}

#[test]
fn a_damaged_or_missing_index_is_rebuilt() {
    let (_tmp, faces, cache_dir) = faceset(3);
    settle(&faces);
    let cache = open(&faces, &cache_dir);
    cache.build(&NoProgress).unwrap();
    let index = cache_dir.join("aligned.index.json");
    let good = std::fs::read_to_string(&index).unwrap();
    assert_eq!(Index::read(&index).map(|e| e.len()), Some(3));
    let bad_key = good.replacen("\"key\":\"", "\"key\":\"../../", 1);
    for damaged in ["{\"version\":1,\"fa", "", &bad_key] {
        std::fs::write(&index, damaged).unwrap();
        let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
        assert_eq!((report.built, report.hashed), (0, 3), "{damaged:?}: {report:?}");
        assert_eq!(std::fs::read_to_string(&index).unwrap(), good, "rewritten whole");
    }
    std::fs::remove_file(&index).unwrap();
    let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
    assert_eq!((report.built, report.hashed), (0, 3), "{report:?}");
    assert_eq!(Index::read(&index).map(|e| e.len()), Some(3));
}

#[test]
fn a_junk_file_is_reported_and_the_rest_built() {
    let (_tmp, faces, cache_dir) = faceset(2);
    std::fs::write(faces.join("junk.jpg"), b"not an image").unwrap();
    let png = std::fs::read(faces.join("face_000.png")).unwrap();
    std::fs::write(faces.join("cut.png"), &png[..png.len() / 8]).unwrap();
    let cache = open(&faces, &cache_dir);
    let report = cache.build(&NoProgress).unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(failed, ["cut.png", "junk.jpg"], "{report:?}");
    assert!(report.failed.iter().all(|f| matches!(f.error, ThumbError::NotAnImage { .. })));
    let message = report.failed[1].error.to_string();
    assert!(message.contains("junk.jpg") && message.contains("move it out"), "{message}");
    assert_eq!((report.faces, report.built), (4, 2));
    assert!(matches!(cache.get("junk.jpg"), Err(ThumbError::NotAnImage { .. })));
    assert!(matches!(cache.get("../aligned/face_000.png"), Err(ThumbError::NotAFace(_))));
    assert!(matches!(cache.get("notes.txt"), Err(ThumbError::NotAFace(_))));
    assert!(matches!(cache.get("gone.png"), Err(ThumbError::NoSuchFace(_))));
    std::os::unix::fs::symlink(faces.join("face_000.png"), faces.join("link.png")).unwrap();
    assert!(matches!(cache.get("link.png"), Err(ThumbError::NotAFace(_))));
    let entries = cache.lookup().unwrap();
    let junk = entries.iter().find(|e| e.file.name == "junk.jpg").unwrap();
    assert!(junk.key.is_some() && !junk.has_thumb, "{junk:?}");
}

#[test]
fn a_face_gone_mid_build_is_skipped() {
    let (_tmp, faces, cache_dir) = faceset(3);
    let files = list_faces(&faces).unwrap();
    std::fs::remove_file(faces.join("face_001.png")).unwrap();
    let cache = open(&faces, &cache_dir);
    let report = cache.build_files(&files, &NoProgress).unwrap();
    assert_eq!((report.vanished, report.built), (1, 2), "{report:?}");
    assert!(report.failed.is_empty());
}

#[test]
fn a_face_written_just_now_is_read_every_time() {
    let (_tmp, faces, cache_dir) = faceset(2);
    let cache = open(&faces, &cache_dir);
    assert_eq!(cache.build(&NoProgress).unwrap().built, 2);
    let report = cache.build(&NoProgress).unwrap();
    assert_eq!((report.built, report.hashed), (0, 2), "{report:?}");
    assert_eq!(Index::read(&cache_dir.join("aligned.index.json")).map(|e| e.len()), Some(0));
}

#[test]
fn two_builders_at_once_leave_whole_files() {
    let (_tmp, faces, cache_dir) = faceset(24);
    settle(&faces);
    for round in 0..4 {
        let _ = std::fs::remove_dir_all(&cache_dir);
        let (a, b) = (open(&faces, &cache_dir), open(&faces, &cache_dir));
        let start = std::sync::Barrier::new(2);
        let build = |cache: &ThumbCache| {
            start.wait();
            let got = cache.get("face_011.png").map(|_| ());
            (cache.build(&NoProgress).unwrap(), got)
        };
        let (ra, rb) = std::thread::scope(|s| {
            let ra = s.spawn(|| build(&a));
            let rb = s.spawn(|| build(&b));
            (ra.join().unwrap(), rb.join().unwrap())
        });
        for (report, got) in [ra, rb] {
            assert!(report.failed.is_empty() && got.is_ok(), "round {round}: {report:?} {got:?}");
        }
        assert_eq!(thumb_count(&a), 24);
        for entry in a.lookup().unwrap() {
            let path = a.thumb_path(entry.key.as_deref().unwrap()).unwrap();
            assert!(is_whole_jpeg(&std::fs::read(path).unwrap()), "{entry:?}");
        }
        let index = Index::read(&cache_dir.join("aligned.index.json"));
        assert_eq!(index.map(|e| e.len()), Some(24));
        let files = walkdir::WalkDir::new(&cache_dir).into_iter().flatten();
        let tmp: Vec<_> = files.filter(|e| e.path().to_string_lossy().ends_with(".tmp")).collect();
        assert!(tmp.is_empty(), "round {round}: {tmp:?}");
    }
}

#[test]
fn options_out_of_range_are_refused() {
    let (_tmp, faces, cache_dir) = faceset(0);
    for (size_px, jpeg_quality) in [(0, 85), (128, 0), (128, 101), (MAX_THUMB_PX + 1, 85)] {
        let options = ThumbOptions { size_px, jpeg_quality };
        let err = ThumbCache::open(&faces, &cache_dir, options).unwrap_err();
        assert!(matches!(err, ThumbError::BadOptions { .. }), "{err}");
    }
    let cache = ThumbCache::open(&faces, &cache_dir, ThumbOptions::default()).unwrap();
    assert_eq!(cache.thumb_path("../x"), None);
    let key = content_key(b"x");
    assert_eq!(cache.thumb_path(&key), Some(cache_dir.join(format!("128px_q85/{key}.jpg"))));
}

/// The benchmark of `scripts/bench/thumbs.sh`: `DFL_BENCH_FACESET=DIR DFL_BENCH_CACHE=DIR
/// [DFL_BENCH_ROUNDS=3] cargo test --release --lib bench_thumbs -- --ignored --nocapture`.
/// Renames every face of DIR and back; removes the cache folder.
#[test]
#[ignore = "benchmark; run by scripts/bench/thumbs.sh"]
fn bench_thumbs() {
    let env = |name: &str| std::env::var(name).ok();
    let faces = PathBuf::from(env("DFL_BENCH_FACESET").expect("DFL_BENCH_FACESET"));
    let cache_dir = PathBuf::from(env("DFL_BENCH_CACHE").expect("DFL_BENCH_CACHE"));
    let rounds: usize = env("DFL_BENCH_ROUNDS").and_then(|r| r.parse().ok()).unwrap_or(3);
    let n = list_faces(&faces).unwrap().len();
    println!("thumbs: {n} faces, {} rayon threads", rayon::current_num_threads());
    for round in 1..=rounds {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&cache_dir);
        // The last round's writes and removals reach the disk before this round is timed.
        std::process::Command::new("sync").status().unwrap();
        println!("thumbs: (cache removed and synced in {:.1} s)", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.built, n, "{report:?}");
        println!("thumbs: cold build {secs:.2} s = {:.0} faces/s (round {round})", n as f64 / secs);
    }
    bench_decode(&faces);
    bench_warm(&faces, &cache_dir, rounds);
    bench_size(&cache_dir);
    bench_renamed(&faces, &cache_dir);
    std::fs::remove_file(cache_dir.join("aligned.index.json")).unwrap();
    let ms = time_ms(|| open(&faces, &cache_dir).lookup().unwrap().len());
    println!("thumbs: lookup without an index (reads and hashes every face) {ms:.0} ms");
    std::fs::remove_dir_all(&cache_dir).unwrap();
}

fn time_ms(f: impl FnOnce() -> usize) -> f64 {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed().as_secs_f64() * 1e3
}

/// One thread making thumbnails from bytes in memory, and decoding alone, with the reduced
/// decode and with a full one.
fn bench_decode(faces: &Path) {
    let files = list_faces(faces).unwrap();
    let sample: Vec<Vec<u8>> =
        files.iter().take(240).map(|f| std::fs::read(faces.join(&f.name)).unwrap()).collect();
    let options = ThumbOptions::default();
    let flags = |bytes: &[u8], full: bool| {
        if full { imgcodecs::IMREAD_COLOR } else { decode_flags(bytes, options.size_px) }
    };
    let rate = |f: &dyn Fn(&[u8]) -> usize| {
        let t = Instant::now();
        let n: usize = (0..4).flat_map(|_| &sample).map(|b| f(b)).sum();
        std::hint::black_box(n);
        (4 * sample.len()) as f64 / t.elapsed().as_secs_f64()
    };
    for full in [false, true, false, true] {
        let thumb =
            rate(&|b| make_thumb_decoded_with(b, faces, options, flags(b, full)).unwrap().len());
        let decode = rate(&|b| {
            imgcodecs::imdecode(&Vector::from_slice(b), flags(b, full)).unwrap().cols() as usize
        });
        let how = if full { "full decode + resize" } else { "reduced decode" };
        println!(
            "thumbs: one thread, {} faces in memory, {how}: make_thumb {thumb:.0} faces/s, \
             decode alone {decode:.0} faces/s",
            sample.len()
        );
    }
}

fn bench_warm(faces: &Path, cache_dir: &Path, rounds: usize) {
    for round in 1..=rounds {
        let list = time_ms(|| list_faces(faces).unwrap().len());
        let lookup = time_ms(|| {
            let entries = open(faces, cache_dir).lookup().unwrap();
            assert!(entries.iter().all(|e| e.has_thumb));
            entries.len()
        });
        let build = time_ms(|| open(faces, cache_dir).build(&NoProgress).unwrap().built);
        let cache = open(faces, cache_dir);
        let names: Vec<String> = list_faces(faces).unwrap().into_iter().map(|f| f.name).collect();
        let get = time_ms(|| names.iter().map(|name| cache.get(name).unwrap().len()).sum());
        println!(
            "thumbs: warm listing {list:.0} ms; open + lookup (index, listing, keys, \
             thumbnails present) {lookup:.0} ms; build with nothing to do {build:.0} ms; \
             get every thumbnail, one thread {get:.0} ms (round {round})"
        );
    }
}

fn bench_size(cache_dir: &Path) {
    let files = walkdir::WalkDir::new(cache_dir).into_iter().flatten();
    let (mut thumbs, mut bytes, mut on_disk) = (0, 0, 0);
    for entry in files.filter(|e| e.path().extension().is_some_and(|x| x == THUMB_EXT)) {
        let meta = entry.metadata().unwrap();
        thumbs += 1;
        bytes += meta.len();
        on_disk += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    }
    let index = std::fs::metadata(cache_dir.join("aligned.index.json")).unwrap().len();
    println!(
        "thumbs: cache {thumbs} thumbnails, {:.1} MB ({:.1} KB each; {:.1} MB on disk), \
         index {:.2} MB",
        bytes as f64 / 1e6,
        bytes as f64 / 1e3 / f64::from(thumbs),
        on_disk as f64 / 1e6,
        index as f64 / 1e6
    );
}

/// Renames every face (as a sort does), looks up and builds, renames them back.
fn bench_renamed(faces: &Path, cache_dir: &Path) {
    let names: Vec<String> = list_faces(faces).unwrap().into_iter().map(|f| f.name).collect();
    let renamed = |name: &str| faces.join(format!("r_{name}"));
    for name in &names {
        std::fs::rename(faces.join(name), renamed(name)).unwrap();
    }
    let lookup = time_ms(|| open(faces, cache_dir).lookup().unwrap().len());
    let report = open(faces, cache_dir).build(&NoProgress).unwrap();
    assert_eq!((report.built, report.hashed), (0, 0), "{report:?}");
    println!("thumbs: open + lookup after renaming every face {lookup:.0} ms (nothing read)");
    for name in &names {
        std::fs::rename(renamed(name), faces.join(name)).unwrap();
    }
}

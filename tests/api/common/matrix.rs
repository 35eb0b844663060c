//! The harness of the `api` test binary (`harness = false` in `Cargo.toml`, run by
//! libtest-mimic), so that the database matrix is reported where `cargo test` shows it.
//!
//! Each module lists its cases with [`cases!`]; `main.rs` hands them all to [`main`], which
//! probes each database server the selected cases need, once, and prints one line before
//! running, e.g.
//!
//! ```text
//! database matrix: sqlite 70 cases; postgres 73 cases; mariadb 0 cases run, 74 skipped (unreachable at mysql://root@127.0.0.1:3306: …)
//! ```
//!
//! A case whose server is unreachable is reported by the harness as `ignored` (and counted
//! in its closing line), unless `KK_REQUIRE_ALL_DATABASES=1`, which makes an unreachable
//! server fail the run before any case starts. Filters work as with the built-in harness:
//! `cargo test --test api -- sources`, `-- ::postgres`, `--exact sources::a_deleted_source_is_gone::mariadb`.

use std::{future::Future, process::ExitCode};

use libtest_mimic::{Arguments, Trial};

use super::{Kind, TestDb};

/// One test: its name, the database servers it needs, and how to run it.
pub struct Case {
    /// `module::function`, with `::sqlite`, `::postgres` or `::mariadb` for a matrix case.
    name: String,
    /// The servers it needs; a case needing an unreachable one is skipped.
    needs: Vec<Kind>,
    run: Box<dyn FnOnce() + Send>,
}

/// Lists a module's cases as `pub fn cases()`, one group per way of running:
///
/// ```ignore
/// cases! {
///     on_all_databases: a, b;           // async fn a(db: TestDb), once per backend
///     tokio_multi_thread: c;            // async fn c(), as #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///     tokio_multi_thread[Postgres]: d;  // the same, needing PostgreSQL (skipped without it)
///     tokio: e;                         // async fn e(), as #[tokio::test]
///     test: f;                          // fn f(), as #[test]
/// }
/// ```
#[macro_export]
macro_rules! cases {
    ($($how:ident $([$($needs:ident),* $(,)?])? : $($name:ident),+ $(,)?;)*) => {
        /// This module's cases, for the harness (`common::matrix`).
        pub fn cases() -> Vec<$crate::common::matrix::Case> {
            let mut cases = Vec::new();
            $($crate::__cases_group!(cases, $how, [$($($needs),*)?], $($name),+);)*
            cases
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cases_group {
    ($cases:ident, $how:ident, $needs:tt, $($name:ident),+) => {
        $(
            $cases.extend($crate::common::matrix::$how(
                {
                    #[allow(unused_imports)]
                    use $crate::common::Kind::*;
                    &$needs
                },
                concat!(module_path!(), "::", stringify!($name)),
                $name,
            ));
        )+
    };
}

/// `api::sources::x` without the binary's name.
fn case_name(path: &str) -> String {
    path.split_once("::").map_or(path, |(_, rest)| rest).to_owned()
}

/// An async fn taking a fresh database, once on each backend, each on its own
/// multi-thread runtime with 2 workers.
pub fn on_all_databases<T, F>(needs: &[Kind], path: &str, test: T) -> Vec<Case>
where
    T: FnOnce(TestDb) -> F + Copy + Send + 'static,
    F: Future<Output = ()>,
{
    assert!(needs.is_empty(), "{path}: on_all_databases runs on every backend");
    [Kind::Sqlite, Kind::Postgres, Kind::MySql]
        .into_iter()
        .map(|kind| Case {
            name: format!("{}::{}", case_name(path), kind.name()),
            needs: vec![kind],
            run: Box::new(move || multi_thread().block_on(async move { test(TestDb::create(kind).await).await })),
        })
        .collect()
}

/// An async fn on a multi-thread runtime with 2 workers.
pub fn tokio_multi_thread<T, F>(needs: &[Kind], path: &str, test: T) -> Vec<Case>
where
    T: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()>,
{
    vec![Case { name: case_name(path), needs: needs.to_vec(), run: Box::new(move || multi_thread().block_on(test())) }]
}

/// An async fn on a current-thread runtime.
pub fn tokio<T, F>(needs: &[Kind], path: &str, test: T) -> Vec<Case>
where
    T: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()>,
{
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    vec![Case { name: case_name(path), needs: needs.to_vec(), run: Box::new(move || runtime().block_on(test())) }]
}

/// A plain fn.
pub fn test(needs: &[Kind], path: &str, test: fn()) -> Vec<Case> {
    vec![Case { name: case_name(path), needs: needs.to_vec(), run: Box::new(test) }]
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Whether libtest-mimic will leave `name` out (its own rule, which it keeps private).
fn filtered_out(args: &Arguments, name: &str) -> bool {
    let matches = |pattern: &String| if args.exact { name == pattern } else { name.contains(pattern.as_str()) };
    args.filter.as_ref().is_some_and(|filter| !matches(filter)) || args.skip.iter().any(matches)
}

/// Runs `cases` as the built-in harness would, after the database matrix line; the
/// process's exit code.
pub fn main(mut cases: Vec<Case>) -> ExitCode {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS").ok().and_then(|n| n.parse().ok());
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    let servers = [Kind::Sqlite, Kind::Postgres, Kind::MySql];
    let selected =
        |kind: Kind| cases.iter().filter(|case| case.needs.contains(&kind) && !filtered_out(&args, &case.name)).count();
    // `--list` is read by tools: it prints the names only, and probes nothing.
    let unreachable: Vec<(Kind, String)> = if args.list {
        Vec::new()
    } else {
        let wanted: Vec<Kind> =
            servers.into_iter().filter(|&kind| kind != Kind::Sqlite && selected(kind) > 0).collect();
        super::probe(&wanted)
    };
    let reason = |kind: Kind| unreachable.iter().find(|(k, _)| *k == kind).map(|(_, why)| why.as_str());
    if !args.list {
        let parts: Vec<String> = servers
            .into_iter()
            .map(|kind| match reason(kind) {
                None => format!("{} {} cases", kind.name(), selected(kind)),
                Some(why) => format!("{} 0 cases run, {} skipped ({why})", kind.name(), selected(kind)),
            })
            .collect();
        println!("database matrix: {}", parts.join("; "));
        if !unreachable.is_empty() && super::required() {
            for (kind, why) in &unreachable {
                eprintln!("error: KK_REQUIRE_ALL_DATABASES=1 but {} is {why}", kind.name());
            }
            return ExitCode::FAILURE;
        }
    }
    let trials = cases
        .into_iter()
        .map(|case| match case.needs.iter().find_map(|&kind| reason(kind).map(|why| (kind, why.to_owned()))) {
            None => Trial::test(case.name, move || {
                (case.run)();
                Ok(())
            }),
            // Run anyway (`--ignored`, `--include-ignored`): fail, saying why it was skipped.
            Some((kind, why)) => {
                Trial::test(case.name, move || Err(format!("{} is {why}", kind.name()).into())).with_ignored_flag(true)
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

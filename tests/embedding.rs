//! The embedding example (`examples/embed.rs`) runs inside a test's Actix system.

#[path = "../examples/embed.rs"]
mod embed;

#[actix_rt::test]
async fn kai_runs_inside_another_actix_application() {
    let report = embed::run().await.expect("the example runs");
    assert!(report[0].starts_with("kai node "), "{report:?}");
    assert_eq!(report[1], "greeting = \"hello from the host app\" (flags 7)");
    assert_eq!(report[2], "home viewed 4 times");
    assert_eq!(report[3], "greeting deleted: true");
    assert_eq!(report[4], "kai node stopped");
}

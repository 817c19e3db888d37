//! `anpx-smol receiver --admin-listen` and `anpx-smol both` with two admin
//! planes: the same checks as `anpx`'s.

#[path = "../../shell-tokio/tests/common/receiver_admin.rs"]
mod receiver_admin;

#[test]
fn the_admin_listener_reports_a_gateway_it_cannot_reach() {
    receiver_admin::the_admin_listener_reports_a_gateway_it_cannot_reach(env!(
        "CARGO_BIN_EXE_anpx-smol"
    ));
}

#[test]
fn both_keeps_the_two_admin_planes_apart() {
    receiver_admin::both_keeps_the_two_admin_planes_apart(env!("CARGO_BIN_EXE_anpx-smol"));
}

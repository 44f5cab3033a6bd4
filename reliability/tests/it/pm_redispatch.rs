//! Deterministic reproduction of the duplicate the kill test found (fixed in evfold-native 8bbf375): a process manager that
//! crashes after dispatching a command but before saving its checkpoint re-dispatches it on
//! restart (at-least-once, same dispatch id, same event ids); the store must not append it twice.

use evfold_reliability::check::redispatch_deposits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redispatch_after_lost_checkpoint_deposits_once() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(redispatch_deposits(dir.path()).await.unwrap(), 1, "the transfer was deposited more than once");
}

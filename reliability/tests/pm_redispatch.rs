//! Deterministic reproduction of the duplicate the kill test finds: a process manager that
//! crashes after dispatching a command but before saving its checkpoint re-dispatches it on
//! restart (at-least-once, same dispatch id, same event ids); the store must not append it twice.

use evfold_core::examples::{BankAccount, BankCommand, Transfers};
use evfold_core::{CommandContext, ProcessManager};
use evfold_native::CHECKPOINT_FILE;
use evfold_reliability::workload::builder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redispatch_after_lost_checkpoint_deposits_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).open().await.unwrap();
    let ctx = CommandContext::default();
    for id in ["a-0", "a-1"] {
        let account = store.get::<BankAccount>(id).await.unwrap();
        account.execute(BankCommand::Open { owner: id.into() }, ctx.clone()).await.unwrap();
    }
    let from = store.get::<BankAccount>("a-0").await.unwrap();
    from.execute(BankCommand::Deposit { amount: 100 }, ctx.clone()).await.unwrap();
    from.execute(BankCommand::TransferOut { to: "a-1".into(), amount: 40 }, ctx).await.unwrap();
    assert_eq!(store.run_process_managers().await.unwrap().dispatched, 1);
    let checkpoint = store.layout().process_manager_dir(Transfers::NAME).join(CHECKPOINT_FILE);
    store.close().await;

    // The crash window: the deposit is durable, the checkpoint that covers it is not.
    std::fs::remove_file(&checkpoint).unwrap();

    let store = builder(dir.path()).open().await.unwrap();
    store.run_process_managers().await.unwrap();
    let balance = store.get::<BankAccount>("a-1").await.unwrap().state().await.unwrap().balance;
    let deposits = store.read_events("bank-account", "a-1").await.unwrap();
    store.close().await;
    let ids: Vec<_> = deposits.iter().filter(|r| r.event_type == "Deposited").map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 1, "the transfer was deposited {} times (event ids {ids:?})", ids.len());
    assert_eq!(balance, 40);
}

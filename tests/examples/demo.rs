//! `scripts/demo`: a throw-away provider on loopback (Dovecot IMAP and
//! submission, OpenSMTPD delivering between the demo users) and one gateway
//! for Alice and one for Bob, so a newcomer can watch Autocrypt bootstrap
//! encryption without a mail account. Enter stops everything.

use e2e::Gateway;
use testbed::Provider;

const USERS: [(&str, &str); 2] = [("alice@example.org", "alice"), ("bob@example.org", "bob")];

fn main() {
    let root = tempfile::tempdir().expect("a temporary directory");
    eprintln!("Starting the demo provider (Dovecot + OpenSMTPD on loopback) …");
    let provider = Provider::start(&USERS);
    let mut gateways = Vec::new();
    for (address, _) in USERS {
        let name = address.split('@').next().unwrap_or(address);
        let mut gateway = Gateway::new(root.path(), name);
        gateway.init(address, &provider);
        gateway.start();
        gateways.push(gateway);
    }

    println!("\nLetterlock demo: two people, each with a gateway, one provider on this machine.\n");
    for ((address, password), g) in USERS.iter().zip(&gateways) {
        println!("{address} (password \"{password}\")");
        println!("  IMAP 127.0.0.1:{}  SMTP 127.0.0.1:{}  security None, normal password, username {address}", g.imap_port, g.smtp_port);
        println!("  mutt: mutt -f imap://{}@127.0.0.1:{}/INBOX -e 'set smtp_url=smtp://{}@127.0.0.1:{}/ smtp_pass={password} imap_pass={password}'",
            address.replace('@', "%40"), g.imap_port, address.replace('@', "%40"), g.smtp_port);
        println!(
            "  keys:  target/debug/gateway keytool list --config {}",
            g.config.display()
        );
        println!("  log:   {}", g.log.display());
    }
    println!("\nTry it: write from Alice to Bob (it goes out in cleartext, with Alice's key in an");
    println!(
        "Autocrypt header); read it as Bob, reply — the reply is encrypted, and Alice reads it"
    );
    println!("decrypted, with a Letterlock-Security header saying so. What the provider stored is");
    println!(
        "ciphertext: {}",
        provider.dovecot.mail_dir("alice@example.org").display()
    );
    println!("\nPress Enter to stop the demo and remove its files.");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    for g in &mut gateways {
        g.stop();
    }
}

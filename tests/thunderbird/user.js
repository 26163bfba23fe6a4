// A Thunderbird profile as its account wizard writes one for a Letterlock
// gateway (README, "Thunderbird, step by step"): IMAP and SMTP on the
// gateway's loopback ports, security None, normal password, Sent and Drafts
// on the server; plus what a test needs: no first-run prompts or update
// checks, Marionette on a port of the test's, and no mail check at start
// (the test stores the password first, then asks for the folders).
// Placeholders in braces are filled in by tests/tests/thunderbird.rs.
user_pref("mail.account.account1.identities", "id1");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.account.account2.server", "server2");
user_pref("mail.accountmanager.accounts", "account1,account2");
user_pref("mail.accountmanager.defaultaccount", "account1");
user_pref("mail.accountmanager.localfoldersserver", "server2");
user_pref("mail.identity.id1.fullName", "{NAME}");
user_pref("mail.identity.id1.useremail", "{USER}");
user_pref("mail.identity.id1.smtpServer", "smtp1");
user_pref("mail.identity.id1.valid", true);
user_pref("mail.identity.id1.fcc_folder", "imap://{USER_URL}@127.0.0.1/Sent");
user_pref("mail.identity.id1.draft_folder", "imap://{USER_URL}@127.0.0.1/Drafts");
user_pref("mail.server.server1.hostname", "127.0.0.1");
user_pref("mail.server.server1.port", {IMAP_PORT});
user_pref("mail.server.server1.type", "imap");
user_pref("mail.server.server1.userName", "{USER}");
user_pref("mail.server.server1.realhostname", "127.0.0.1");
user_pref("mail.server.server1.realuserName", "{USER}");
user_pref("mail.server.server1.socketType", 0);
user_pref("mail.server.server1.authMethod", 3);
user_pref("mail.server.server1.name", "{USER}");
user_pref("mail.server.server1.login_at_startup", false);
user_pref("mail.server.server1.check_new_mail", false);
user_pref("mail.server.server1.directory-rel", "[ProfD]ImapMail/127.0.0.1");
user_pref("mail.server.server2.type", "none");
user_pref("mail.server.server2.hostname", "Local Folders");
user_pref("mail.server.server2.userName", "nobody");
user_pref("mail.server.server2.name", "Local Folders");
user_pref("mail.server.server2.directory-rel", "[ProfD]Mail/Local Folders");
user_pref("mail.smtpservers", "smtp1");
user_pref("mail.smtp.defaultserver", "smtp1");
user_pref("mail.smtpserver.smtp1.hostname", "127.0.0.1");
user_pref("mail.smtpserver.smtp1.port", {SMTP_PORT});
user_pref("mail.smtpserver.smtp1.username", "{USER}");
user_pref("mail.smtpserver.smtp1.authMethod", 3);
user_pref("mail.smtpserver.smtp1.try_ssl", 0);
user_pref("marionette.port", {MARIONETTE_PORT});
user_pref("mail.provider.enabled", false);
user_pref("mailnews.start_page.enabled", false);
user_pref("mail.shell.checkDefaultClient", false);
user_pref("app.update.enabled", false);
user_pref("app.update.auto", false);
user_pref("mail.rights.version", 1);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("datareporting.policy.dataSubmissionPolicyBypassNotification", true);
user_pref("mail.startup.enabledMailCheckOnce", true);
user_pref("mailnews.auto_config_url", "");
user_pref("browser.aboutConfig.showWarning", false);
user_pref("mail.spotlight.firstRunDone", true);
user_pref("mail.winsearch.firstRunDone", true);
user_pref("mailnews.oauth.loglevel", "Error");

// What the Thunderbird test adds to the profile `gateway thunderbird-profile`
// writes: no first-run prompts or update checks, and Marionette on a port of
// the test's. Placeholders in braces are filled in by tests/tests/thunderbird.rs.
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

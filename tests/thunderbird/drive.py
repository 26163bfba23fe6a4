"""Drives a running Thunderbird through its Marionette remote protocol (no
dependency: the protocol is length-prefixed JSON over TCP) and prints, as
JSON, what Thunderbird itself holds after discovering the account's folders
and fetching the Inbox's headers.

argv: marionette-port imap-host imap-port smtp-host smtp-port user password
[recipient] -- with a recipient, it then writes and sends a message to them
from Thunderbird's composer (its copy filed in Sent by Thunderbird), saves a
draft and deletes the Inbox's first message. If the script fails, a
screenshot goes to $LETTERLOCK_TB_SCREENSHOT.

argv: restart marionette-port subject -- Thunderbird was started again with
its own start-up mail check: this only waits until the Inbox lists a message
with that subject, without asking Thunderbird to do anything, then a few
seconds more (for late dialogs), and prints what Thunderbird holds.
"""
import base64, json, os, socket, sys, time

restart = sys.argv[1] == "restart"
if restart:
    port, expected = sys.argv[2:4]
else:
    port, imap_host, imap_port, smtp_host, smtp_port, user, password = sys.argv[1:8]
    recipient = sys.argv[8] if len(sys.argv) > 8 else ""


class Marionette:
    def __init__(self, port):
        deadline = time.time() + 60
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", int(port)), timeout=300)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        self.next_id = 0
        self.read()  # the server's hello

    def read(self):
        size = b""
        while not size.endswith(b":"):
            byte = self.sock.recv(1)
            if not byte:
                raise ConnectionError("Marionette closed the connection")
            size += byte
        want = int(size[:-1])
        data = b""
        while len(data) < want:
            chunk = self.sock.recv(want - len(data))
            if not chunk:
                raise ConnectionError("Marionette closed the connection")
            data += chunk
        return json.loads(data)

    def call(self, name, params):
        self.next_id += 1
        body = json.dumps([0, self.next_id, name, params]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            kind, msg_id, error, result = self.read()
            if msg_id == self.next_id:
                if error:
                    raise RuntimeError(f"{name}: {error}")
                return result


SCRIPT = r"""
const [imapHost, imapPort, smtpHost, smtpPort, user, password, recipient, resolve] = arguments;
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const stage = (name) => Services.prefs.setStringPref("letterlock.test.stage", name);
(async () => {
  const started = Date.now();
  for (const origin of ["imap://" + imapHost, "smtp://" + smtpHost]) {
    const login = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(Ci.nsILoginInfo);
    login.init(origin, null, origin, user, password, "", "");
    try { await Services.logins.addLoginAsync(login); } catch (e) {}
  }
  const server = MailServices.accounts.accounts[0].incomingServer;
  const root = server.rootFolder;
  const imap = Cc["@mozilla.org/messenger/imapservice;1"].getService(Ci.nsIImapService);
  const run = (start) => new Promise((done) => {
    start({ OnStartRunningUrl() {}, OnStopRunningUrl(url, status) { done(status); } });
  });
  const discovered = await run((l) => imap.discoverAllFolders(root, l, null));
  const inbox = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
  const updated = await run((l) => imap.selectFolder(inbox, l, null));
  const headers = [...inbox.messages];
  const subjects = headers.map((m) => m.mime2DecodedSubject);
  // Opened as the message pane would: streamed through the gateway and
  // parsed by Thunderbird's own MIME code.
  const { MsgHdrToMimeMessage } = ChromeUtils.importESModule(
    "resource:///modules/gloda/MimeMessage.sys.mjs");
  const opened = headers.length == 0 ? null : await new Promise((done) => {
    MsgHdrToMimeMessage(headers[headers.length - 1], null, (hdr, mime) => {
      done(mime ? {
        body: mime.coerceBodyToPlaintext(inbox),
        attachments: mime.allUserAttachments.map((a) => a.name),
      } : { error: "not parsed" });
    }, true, { examineEncryptedParts: true, saneBodySize: true });
  });
  // Written and sent as from the composer: plain text, delivered now, the
  // copy filed in the identity's Sent folder (on the server).
  const compose = async (mode, subject, body) => {
    const account = MailServices.accounts.defaultAccount;
    const identity = account.defaultIdentity;
    const fields = Cc["@mozilla.org/messengercompose/composefields;1"]
      .createInstance(Ci.nsIMsgCompFields);
    fields.from = identity.email;
    fields.to = recipient;
    fields.subject = subject;
    fields.body = body;
    const params = Cc["@mozilla.org/messengercompose/composeparams;1"]
      .createInstance(Ci.nsIMsgComposeParams);
    params.composeFields = fields;
    params.identity = identity;
    params.type = Ci.nsIMsgCompType.New;
    params.format = Ci.nsIMsgCompFormat.PlainText;
    const composer = MailServices.compose.initCompose(params);
    return await new Promise((done) => {
      let stopped = null;
      composer.RegisterStateListener({
        NotifyComposeFieldsReady() {},
        NotifyComposeBodyReady() {},
        SaveInFolderDone() {},
        ComposeProcessDone(result) { done({ result, stopped }); },
      });
      composer.addMsgSendListener({
        onStartSending() {}, onProgress() {}, onStatus() {},
        onStopSending(id, status, msg) { stopped = { status, msg }; },
        onGetDraftFolderURI() {}, onSendNotPerformed(id, status) { done({ notPerformed: status }); },
        onTransportSecurityError() {},
      });
      composer.sendMsg(mode, identity, account.key, null, null)
        .catch((e) => done({ error: String(e) }));
    });
  };
  let sent = null, draft = null, deleted = null;
  if (recipient) {
    sent = await compose(Ci.nsIMsgCompDeliverMode.Now, "Written in Thunderbird",
      "Sent from Thunderbird's composer: thunderbird-canary\r\n");
    // Saved as a draft: filed in the identity's Drafts folder, then read
    // back from the server the way the Drafts folder shows it.
    stage("draft");
    draft = await compose(Ci.nsIMsgCompDeliverMode.SaveAsDraft, "A draft in Thunderbird",
      "Not sent yet: draft-canary\r\n");
    stage("drafts folder");
    const drafts = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Drafts);
    await run((l) => imap.selectFolder(drafts, l, null));
    const saved = [...drafts.messages];
    draft.subjects = saved.map((m) => m.mime2DecodedSubject);
    if (saved.length) {
      draft.body = await new Promise((done) => {
        MsgHdrToMimeMessage(saved[0], null, (hdr, mime) => {
          done(mime ? mime.coerceBodyToPlaintext(drafts) : null);
        }, true, { saneBodySize: true });
      });
    }
    stage("delete");
    // Deleted from the Inbox: moved to Trash (Thunderbird's default).
    const trash = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Trash);
    const first = [...inbox.messages][0];
    deleted = await new Promise((done) => {
      // What the Delete key does in the default delete model: a move.
      MailServices.copy.copyMessages(inbox, [first], trash, true, {
        onStartCopy() {}, onProgress() {}, setMessageKey() {}, getMessageId() {},
        onStopCopy(status) { done({ status }); },
      }, null, false);
    });
    stage("trash folder");
    await run((l) => imap.selectFolder(trash, l, null));
    stage("done");
    deleted.trash = [...trash.messages].map((m) => m.mime2DecodedSubject);
  }
  const windows = [];
  for (const w of Services.wm.getEnumerator(null)) {
    windows.push(w.document.documentElement.getAttribute("windowtype") || w.location.href);
  }
  resolve({
    discovered, updated,
    folders: root.descendants.map((f) => f.name),
    subscribed: root.descendants.filter((f) => !(f.flags & Ci.nsMsgFolderFlags.ImapNoselect)).map((f) => f.name),
    subjects,
    opened,
    sent,
    draft,
    deleted,
    windows,
    seconds: (Date.now() - started) / 1000,
  });
})();
"""

# After a restart Thunderbird works alone: it logs in with the password its
# password manager kept, lists the folders and checks the Inbox at start.
RESTART = r"""
const [expected, resolve] = arguments;
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const started = Date.now();
const state = () => {
  const root = MailServices.accounts.accounts[0].incomingServer.rootFolder;
  const inbox = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
  const windows = [];
  for (const w of Services.wm.getEnumerator(null)) {
    windows.push(w.document.documentElement.getAttribute("windowtype") || w.location.href);
  }
  return {
    folders: root.descendants.map((f) => f.name),
    subjects: inbox ? [...inbox.messages].map((m) => m.mime2DecodedSubject) : [],
    windows,
    seconds: (Date.now() - started) / 1000,
  };
};
const poll = setInterval(() => {
  const now = state();
  if (now.subjects.includes(expected) || Date.now() - started > 50000) {
    clearInterval(poll);
    // What a person would see a moment later: a late alert, a prompt.
    setTimeout(() => resolve({ listed: now.seconds, ...state() }), 3000);
  }
}, 200);
"""

# An alert or prompt still open when a script ends fails the call
# (Marionette: "unexpected alert open"), so a dialog shown while Thunderbird
# works fails the test.
m = Marionette(port)
m.call("WebDriver:NewSession", {"capabilities": {}})
m.call("WebDriver:SetTimeouts", {"script": 60000})
m.call("Marionette:SetContext", {"value": "chrome"})
if restart:
    result = m.call("WebDriver:ExecuteAsyncScript",
                    {"script": RESTART, "args": [expected], "newSandbox": True})
    print(json.dumps(result.get("value", result)), flush=True)
    m.call("Marionette:Quit", {"flags": ["eForceQuit"]})
    sys.exit(0)
try:
    result = m.call(
        "WebDriver:ExecuteAsyncScript",
        {
            "script": SCRIPT,
            "args": [imap_host, int(imap_port), smtp_host, int(smtp_port), user, password, recipient],
            "newSandbox": True,
        },
    )
except RuntimeError:
    stage = m.call("WebDriver:ExecuteScript", {
        "script": 'return Services.prefs.getStringPref("letterlock.test.stage", "start");',
        "args": [],
    })
    print("stopped at:", stage, file=sys.stderr)
    # What the screen showed, for the developer (a dialog, a prompt).
    shot = os.environ.get("LETTERLOCK_TB_SCREENSHOT")
    if shot:
        try:
            png = m.call("WebDriver:TakeScreenshot", {"full": True, "hash": False})
            with open(shot, "wb") as out:
                out.write(base64.b64decode(png["value"] if isinstance(png, dict) else png))
            print("screenshot:", shot, file=sys.stderr)
        except Exception as e:  # the screenshot must not hide the failure
            print("no screenshot:", e, file=sys.stderr)
    raise
print(json.dumps(result.get("value", result)), flush=True)

# With a recipient, then: new mail while Thunderbird sits in the Inbox
# (IMAP IDLE through the gateway). The caller delivers it after reading the
# line above; this waits until Thunderbird lists it, without a restart.
IDLE = r"""
const [resolve] = arguments;
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const root = MailServices.accounts.accounts[0].incomingServer.rootFolder;
const inbox = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
const imap = Cc["@mozilla.org/messenger/imapservice;1"].getService(Ci.nsIImapService);
const before = [...inbox.messages].map((m) => m.mime2DecodedSubject);
imap.selectFolder(inbox, { OnStartRunningUrl() {}, OnStopRunningUrl() {} }, null);
const started = Date.now();
const poll = setInterval(() => {
  const now = [...inbox.messages].map((m) => m.mime2DecodedSubject);
  if (now.length > before.length || Date.now() - started > 50000) {
    clearInterval(poll);
    resolve({ before, now, seconds: (Date.now() - started) / 1000 });
  }
}, 200);
"""
if recipient:
    idle = m.call("WebDriver:ExecuteAsyncScript", {"script": IDLE, "args": [], "newSandbox": True})
    print(json.dumps(idle.get("value", idle)), flush=True)
m.call("Marionette:Quit", {"flags": ["eForceQuit"]})

"""Drives a running Thunderbird through its Marionette remote protocol (no
dependency: the protocol is length-prefixed JSON over TCP) and prints, as
JSON, what Thunderbird itself holds after discovering the account's folders
and fetching the Inbox's headers.

argv: marionette-port imap-host imap-port smtp-host smtp-port user password
[recipient] -- with a recipient, it then writes and sends a message to them
from Thunderbird's composer (its copy filed in Sent by Thunderbird).
"""
import json, socket, sys, time

port, imap_host, imap_port, smtp_host, smtp_port, user, password = sys.argv[1:8]
recipient = sys.argv[8] if len(sys.argv) > 8 else ""


class Marionette:
    def __init__(self, port):
        deadline = time.time() + 60
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", int(port)), timeout=120)
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
  let sent = null;
  if (recipient) {
    const account = MailServices.accounts.defaultAccount;
    const identity = account.defaultIdentity;
    const fields = Cc["@mozilla.org/messengercompose/composefields;1"]
      .createInstance(Ci.nsIMsgCompFields);
    fields.from = identity.email;
    fields.to = recipient;
    fields.subject = "Written in Thunderbird";
    fields.body = "Sent from Thunderbird's composer: thunderbird-canary\r\n";
    const params = Cc["@mozilla.org/messengercompose/composeparams;1"]
      .createInstance(Ci.nsIMsgComposeParams);
    params.composeFields = fields;
    params.identity = identity;
    params.type = Ci.nsIMsgCompType.New;
    params.format = Ci.nsIMsgCompFormat.PlainText;
    const compose = MailServices.compose.initCompose(params);
    sent = await new Promise((done) => {
      let stopped = null;
      compose.RegisterStateListener({
        NotifyComposeFieldsReady() {},
        NotifyComposeBodyReady() {},
        SaveInFolderDone() {},
        ComposeProcessDone(result) { done({ result, stopped }); },
      });
      compose.addMsgSendListener({
        onStartSending() {}, onProgress() {}, onStatus() {},
        onStopSending(id, status, msg) { stopped = { status, msg }; },
        onGetDraftFolderURI() {}, onSendNotPerformed(id, status) { done({ notPerformed: status }); },
        onTransportSecurityError() {},
      });
      compose.sendMsg(Ci.nsIMsgCompDeliverMode.Now, identity, account.key, null, null)
        .catch((e) => done({ error: String(e) }));
    });
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
    windows,
    seconds: (Date.now() - started) / 1000,
  });
})();
"""

m = Marionette(port)
m.call("WebDriver:NewSession", {"capabilities": {}})
m.call("Marionette:SetContext", {"value": "chrome"})
result = m.call(
    "WebDriver:ExecuteAsyncScript",
    {
        "script": SCRIPT,
        "args": [imap_host, int(imap_port), smtp_host, int(smtp_port), user, password, recipient],
        "scriptTimeout": 120000,
        "newSandbox": True,
    },
)
print(json.dumps(result.get("value", result)))
m.call("Marionette:Quit", {"flags": ["eForceQuit"]})

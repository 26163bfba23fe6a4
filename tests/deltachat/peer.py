"""A Delta Chat user for tests/tests/deltachat.rs: the real Delta Chat core
(deltachat-rpc-server from PyPI, pinned in tests/requirements.txt) with one
profile straight at the test provider, driven by JSON lines.

One request per line on stdin, one answer per line on stdout:
  {"do": "setup", "addr", "password", "imap_port", "smtp_port"}   -> {"vcard"}
  {"do": "new_profile"}         the same address, a new profile (a new key)
  {"do": "set", "key", "value"} a Delta Chat setting
  {"do": "import_vcard", "vcard"}                                  -> {"contact"}
  {"do": "send", "to", "text", "file"?}      in the 1:1 chat       -> {"id"}
  {"do": "group", "name", "members", "text"} a new group           -> {"id"}
  {"do": "stop_io"} / {"do": "start_io"}
  {"do": "wait_incoming", "timeout"}  the next incoming message    -> {message}
  {"do": "reply", "id", "text", "accept"?}  in the chat of message id
                                      (accepted first if asked) -> {"id"}
Errors answer {"error": "..."}; the driver goes on.
"""

import json
import os
import sys
import threading

from deltachat_rpc_client import DeltaChat, Rpc

VENV_BIN = os.path.dirname(sys.executable)


class Peer:
    def __init__(self, accounts_dir):
        self.rpc = Rpc(
            accounts_dir=accounts_dir,
            rpc_server_path=os.path.join(VENV_BIN, "deltachat-rpc-server"),
        )
        self.rpc.start()
        self.dc = DeltaChat(self.rpc)
        self.account = None
        self.login = None

    def setup(self, addr, password, imap_port, smtp_port):
        self.login = dict(addr=addr, password=password, imap_port=imap_port, smtp_port=smtp_port)
        account = self.dc.add_account()
        account.set_config("displayname", "Dana")
        account.add_or_update_transport(
            {
                "addr": addr,
                "password": password,
                "imapServer": "127.0.0.1",
                "imapPort": imap_port,
                "imapSecurity": "ssl",
                "smtpServer": "127.0.0.1",
                "smtpPort": smtp_port,
                "smtpSecurity": "ssl",
                "certificateChecks": "acceptInvalidCertificates",
            }
        )
        account.bring_online()
        self.account = account
        return {"vcard": account.self_contact.make_vcard()}

    def new_profile(self):
        old = self.account
        old.stop_io()
        old.remove()
        return self.setup(**self.login)

    def chat_with(self, addr):
        contact = self.account.get_contact_by_addr(addr) or self.account.create_contact(addr)
        return contact.create_chat()

    def send(self, to, text, file=None):
        chat = self.chat_with(to)
        message = chat.send_message(text=text, file=file) if file else chat.send_text(text)
        return {"id": message.id}

    def group(self, name, members, text):
        chat = self.account.create_group(name)
        for addr in members:
            chat.add_contact(self.account.get_contact_by_addr(addr) or addr)
        return {"id": chat.send_text(text).id, "chat": chat.id}

    def reply(self, id, text, accept=False):
        snapshot = self.account.get_message_by_id(id).get_snapshot()
        chat = self.account.get_chat_by_id(snapshot.chat_id)
        if accept:
            # What the person does with a contact request: tap "Accept".
            chat.accept()
        return {"id": chat.send_text(text).id}

    def wait_incoming(self, timeout):
        result = {}

        def wait():
            try:
                message = self.account.wait_for_incoming_msg()
                result["message"] = message.get_snapshot()
            except Exception as e:  # reported to the test, which fails with it
                result["error"] = repr(e)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        waiter.join(timeout)
        if "message" not in result:
            return {"error": result.get("error", f"no incoming message within {timeout} s")}
        snap = result["message"]
        chat = self.account.get_chat_by_id(snap.chat_id).get_basic_snapshot()
        sender = snap.sender.get_snapshot().address if snap.get("sender") else None
        return {
            "id": snap.id,
            "text": snap.text,
            "subject": snap.get("subject"),
            "padlock": snap.show_padlock,
            "shown_error": snap.get("error"),
            "file_name": snap.get("file_name"),
            "view_type": snap.get("view_type"),
            "chat": snap.chat_id,
            "chat_type": chat.get("chat_type"),
            "chat_name": chat.get("name"),
            "sender": sender,
        }

    def handle(self, request):
        what = request.pop("do")
        if what == "setup":
            return self.setup(**request)
        if what == "new_profile":
            return self.new_profile()
        if what == "set":
            self.account.set_config(request["key"], request["value"])
            return {}
        if what == "import_vcard":
            [contact] = self.account.import_vcard(request["vcard"])
            return {"contact": contact.id}
        if what == "send":
            return self.send(**request)
        if what == "group":
            return self.group(**request)
        if what == "reply":
            return self.reply(**request)
        if what == "stop_io":
            self.account.stop_io()
            return {}
        if what == "start_io":
            self.account.start_io()
            return {}
        if what == "wait_incoming":
            return self.wait_incoming(request.get("timeout", 60))
        return {"error": f"unknown request {what}"}


def main():
    peer = Peer(sys.argv[1])
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = peer.handle(json.loads(line))
        except Exception as e:  # reported to the test, which fails with it
            answer = {"error": repr(e)}
        print(json.dumps(answer, default=str), flush=True)
    peer.rpc.close()


if __name__ == "__main__":
    main()

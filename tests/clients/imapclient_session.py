"""A session of Python's imapclient (PyPI, the IMAP library most Python
tools use) against the gateway, printing what it saw as JSON lines.

argv: imap-port user password recipient -- first line: folders, the
Inbox's subjects, the encrypted message's text and attachment names,
search, flags with CONDSTORE, a draft appended and a message moved to
Trash. Then it idles in the Inbox and prints the second line when the
caller's new mail is announced.
"""
import email, email.policy, json, sys

from imapclient import IMAPClient

port, user, password, recipient = sys.argv[1:5]

with IMAPClient("127.0.0.1", port=int(port), ssl=False, timeout=60) as c:
    c.login(user, password)
    caps = sorted(x.decode() for x in c.capabilities())
    folders = [(list(map(lambda f: f.decode(), flags)), name) for flags, _, name in c.list_folders()]
    subscribed = [name for _, _, name in c.list_sub_folders()]
    special = {}
    for flags, _, name in c.list_folders():
        for f in flags:
            if f.decode() in ("\\Sent", "\\Drafts", "\\Trash"):
                special[f.decode()] = name
    c.enable("CONDSTORE")
    selected = c.select_folder("INBOX")
    uids = c.search("ALL")
    fetched = c.fetch(uids, ["ENVELOPE", "BODY.PEEK[]", "MODSEQ", "FLAGS"])
    messages = []
    for uid in uids:
        data = fetched[uid]
        parsed = email.message_from_bytes(data[b"BODY[]"], policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",))
        messages.append({
            "uid": uid,
            "subject": data[b"ENVELOPE"].subject.decode() if data[b"ENVELOPE"].subject else None,
            "status": parsed.get("Letterlock-Security"),
            "text": body.get_content() if body else None,
            "attachments": [p.get_filename() for p in parsed.iter_attachments()],
            "modseq": data.get(b"MODSEQ", [None])[0],
        })
    found = c.search(["TEXT", "north"])
    c.add_flags(uids[:1], [b"\\Flagged"])
    changed = c.fetch(uids, ["FLAGS"], modifiers=["CHANGEDSINCE %d" % messages[0]["modseq"]])
    # A draft written by a tool: the gateway encrypts it before it is stored.
    draft = (
        "From: %s\r\nTo: %s\r\nSubject: A draft from imapclient\r\n"
        "Message-ID: <imapclient-draft@example.org>\r\n\r\nNot sent yet: imapclient-canary\r\n"
    ) % (user, recipient)
    c.append(special.get("\\Drafts", "Drafts"), draft.encode(), flags=[b"\\Draft"])
    c.move(uids[:1], special.get("\\Trash", "Trash"))
    c.select_folder(special.get("\\Trash", "Trash"), readonly=True)
    trash = [d[b"ENVELOPE"].subject.decode() for d in c.fetch(c.search("ALL"), ["ENVELOPE"]).values()]
    print(json.dumps({
        "capabilities": caps,
        "folders": folders,
        "subscribed": subscribed,
        "special": special,
        "exists": selected[b"EXISTS"],
        "messages": messages,
        "found": found,
        "changed": {str(k): [f.decode() for f in v[b"FLAGS"]] for k, v in changed.items()},
        "trash": trash,
    }), flush=True)

    c.select_folder("INBOX")
    c.idle()
    print(json.dumps({"idling": True}), flush=True)
    events = []
    for _ in range(12):
        events = c.idle_check(timeout=5)
        if any(e[1] == b"EXISTS" for e in events if len(e) > 1):
            break
    c.idle_done()
    uids = c.search("ALL")
    subjects = [d[b"ENVELOPE"].subject.decode() for d in c.fetch(uids, ["ENVELOPE"]).values()]
    print(json.dumps({"events": [repr(e) for e in events], "subjects": subjects}), flush=True)

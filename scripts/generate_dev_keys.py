"""Write local development keys to var/dev.env on first run; keep them after.

These keys exist only on the developer's machine (var/ is ignored by git) and are
never used in production, where every key comes from the environment.
"""

import base64
import secrets
import sys
from pathlib import Path


def main(path):
    target = Path(path)
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "BLIND_INDEX_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUDIT_MAC_KEYS": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "EMAIL_WEBHOOK_SECRET": secrets.token_hex(32),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
    }
    if target.exists():
        # Keys already there are kept; a key added to the project since is appended.
        present = {line.partition("=")[0] for line in target.read_text().splitlines()}
        missing = {key: value for key, value in values.items() if key not in present}
        with open(target, "a") as env_file:
            env_file.write("".join(f"{key}={value}\n" for key, value in missing.items()))
        print(f"Development keys already in {target}; keeping them ({len(missing)} added).")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    target.chmod(0o600)
    print(f"Generated development keys in {target}.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "var/dev.env")

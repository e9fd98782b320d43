"""Writes a tiny pure-Python wheel, khdemo 0.1.0, for the pip test's local
package index (tests/clients.rs). Standard library only.

    python make_wheel.py OUT_DIR

Prints the wheel's file name.
"""
import base64
import hashlib
import os
import sys
import zipfile

NAME, VERSION = "khdemo", "0.1.0"
FILES = {
    f"{NAME}/__init__.py": 'GREETING = "installed through keyhole"\n',
    f"{NAME}-{VERSION}.dist-info/METADATA": (
        f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
        "Summary: keyhole's pip test package\n"
    ),
    f"{NAME}-{VERSION}.dist-info/WHEEL": (
        "Wheel-Version: 1.0\nGenerator: keyhole-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    ),
}


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def main():
    out = sys.argv[1]
    wheel = f"{NAME}-{VERSION}-py3-none-any.whl"
    record = f"{NAME}-{VERSION}.dist-info/RECORD"
    lines = []
    with zipfile.ZipFile(os.path.join(out, wheel), "w") as z:
        for path, text in FILES.items():
            data = text.encode()
            z.writestr(path, data)
            lines.append(f"{path},{record_hash(data)},{len(data)}")
        lines.append(f"{record},,")
        z.writestr(record, "\n".join(lines) + "\n")
    print(wheel)


if __name__ == "__main__":
    main()

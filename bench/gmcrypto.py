"""SM3 and SM4 throughput: the platform's Swift implementations (`huitong bench gm`) against
OpenSSL's (`openssl speed -evp sm3 / sm4-ecb / sm4-cbc`) in the same run, 8 KiB per call; and QR
PNGs of a dynamic card code generated per second.

    python3 bench/gmcrypto.py          # needs a release build; goal: >= 50 % of OpenSSL
"""
import json
import re
import subprocess

from common import BINARY, log, save


def openssl(algorithm, seconds=2):
    out = subprocess.run(["openssl", "speed", "-evp", algorithm, "-seconds", str(seconds), "-bytes", "8192"],
                         capture_output=True, text=True, check=True).stdout
    # The last line: "<name>  <kB/s for 8192-byte blocks>k" (kB = 1000 bytes).
    line = [l for l in out.splitlines() if l.strip() and not l.startswith(("type", "The", "version", "built", "options", "compiler", "CPUINFO"))][-1]
    return float(re.findall(r"([\d.]+)k", line)[-1]) / 1000


def main():
    ours = json.loads(subprocess.run([BINARY, "bench", "gm", "--seconds", "2"], capture_output=True, text=True, check=True).stdout)
    result = {}
    for name, evp in [("sm3", "sm3"), ("sm4-ecb", "sm4-ecb"), ("sm4-cbc", "sm4-cbc")]:
        theirs = openssl(evp)
        result[name] = {"huitong_MB_s": ours[name], "openssl_MB_s": round(theirs, 1), "ratio": round(ours[name] / theirs, 2)}
        log(name, result[name])
    result["sm4-gcm"] = {"huitong_MB_s": ours["sm4-gcm"]}
    result["qr_png_per_s"] = ours["qr_png_per_s"]  # a 99-character dynamic card code, level M, 8 px per module
    log("QR PNGs per second", ours["qr_png_per_s"])
    save("gmcrypto", result)


if __name__ == "__main__":
    main()

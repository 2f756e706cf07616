"""Per-key image caps (`darkroom keys create --max-pixels/--max-bytes`) are enforced only on
uploads. The same key gets a 2000x2000 image processed by naming it as an https:// URL
(POST /v1/jobs or POST /edit), and gets a 1000x1000 output from a 16x16 upload via resize.

Key E: --max-pixels 100000 --max-bytes 20000.

Copied from ../shared/cases/security for the test suite; changed: a 4xx refusal of the
resize at submit counts as refused (the original read the job id from it), and the /edit
job's state counts in the verdict.
"""
from caselib import H, client, png_b64, post_job, verdict, wait_job

r = post_job("E", {"image_base64": png_b64(2000, 2000), "ops": [{"op": "auto_levels"}]})
print("upload 2000x2000:", r.status_code, r.json().get("error"))

r = post_job("E", {"input": "https://1.2.3.4/big.png", "ops": [{"op": "auto_levels"}]}, Prefer="wait=40")
v = wait_job("E", r.json()["id"])
print("https:// 2000x2000:", r.status_code, v.get("state"), v.get("error"))
url_ok = v.get("state") == "succeeded"

r = client.post("/edit", headers=H("E", Prefer="wait=40"),
                json={"image_url": "https://1.2.3.4/big.png", "instructions": "sharpen"})
v2 = wait_job("E", r.json()["id"])
print("/edit 2000x2000:", r.status_code, v2.get("state"))

r = post_job("E", {"image_base64": png_b64(16, 16), "output": {"format": "png"},
                   "ops": [{"op": "resize", "params": {"width": 1000, "height": 1000, "fit": "stretch"}}]},
             Prefer="wait=40")
if r.status_code >= 400:  # refused at submit: the recipe's output is over the key's cap
    print("16x16 -> resize 1000x1000:", r.status_code, r.json()["error"])
    resized_ok = False
else:
    v3 = wait_job("E", r.json()["id"])
    print("16x16 -> resize 1000x1000:", r.status_code, v3.get("state"), (v3.get("output") or {}).get("url"))
    resized_ok = v3.get("state") == "succeeded"
verdict(url_ok or v2.get("state") == "succeeded" or resized_ok,
        "key capped at 0.1 MP / 20 KB had a 4 MP URL input and a 1 MP resize output processed")

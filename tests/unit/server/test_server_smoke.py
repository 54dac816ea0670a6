import json

pytest_plugins = ["pytest_jupyter.jupyter_server"]


async def test_status(jp_fetch):
    r = await jp_fetch("envpack", "status")
    data = json.loads(r.body)
    assert data["kinds"] == ["build", "fake", "run"]


async def test_fake_op(jp_fetch, notebook, wait_op):
    r = await jp_fetch("envpack", "operations", method="POST",
                       body=json.dumps({"kind": "fake", "path": "nb.ipynb", "options": {"lines": 3}}))
    assert r.code == 202
    op = json.loads(r.body)
    done = await wait_op(op["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    r = await jp_fetch("envpack", "operations", op["id"], "events")
    print(r.body.decode())

from envoy_django import StateFlow


def test_readme_example_runs():
    def hello(ctx):
        ctx.output("Hello!")
        return ctx

    def middle(ctx):
        ctx.output(ctx.output() + " Middle!")
        return ctx

    flow = StateFlow([
        {"name": "Start", "on_state": hello, "router": {"next": "Middle"}},
        {"name": "Middle", "on_state": middle, "router": {"next": None}},
    ])
    assert flow.run().output() == "Hello! Middle!"

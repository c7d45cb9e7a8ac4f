"""strongbox_fuzzer(): one libFuzzer target, built with --config=fuzz."""

def strongbox_fuzzer(name, deps):
    """A `fuzz`-tagged, `manual` cc_binary from `<name>.cc`.

    tools/test finds every such target, builds it with --config=fuzz (which
    instruments the library sources) and runs it for a bounded time.
    """
    native.cc_binary(
        name = name,
        testonly = True,
        srcs = [name + ".cc"],
        copts = ["-fsanitize=fuzzer"],
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["fuzz", "manual"],
        deps = deps + ["@com_google_absl//:lib"],
    )

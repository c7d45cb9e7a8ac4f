"""A repository rule that turns Debian pkg-config modules into a cc_library.

Nothing is fetched from the network: the rule runs pkg-config on the host
and writes the link flags it prints into `linkopts`.
"""

def _pkg_config_library_impl(ctx):
    result = ctx.execute(["pkg-config", "--libs"] + ctx.attr.modules)
    if result.return_code != 0:
        fail("pkg-config failed for %s: %s" % (ctx.attr.modules, result.stderr))
    flags = [f for f in result.stdout.strip().split(" ") if f]
    ctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % ctx.name)
    ctx.file("BUILD", """package(default_visibility = ["//visibility:public"])

cc_library(
    name = "lib",
    linkopts = %s,
)
""" % repr(flags + ctx.attr.extra_linkopts))

pkg_config_library = repository_rule(
    implementation = _pkg_config_library_impl,
    attrs = {
        "modules": attr.string_list(mandatory = True),
        "extra_linkopts": attr.string_list(),
    },
    local = True,
)

"""strongbox_dependencies(): every external repository strongbox needs.

Everything is local: Debian's Bazel helper repositories under
/usr/share/bazel, small shims kept in this folder, and system libraries
described through pkg-config. A workspace that depends on strongbox calls
this macro after declaring `@strongbox` (see README.md).
"""

load(":pkg_config.bzl", "pkg_config_library")

def _shim_repository_impl(ctx):
    ctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % ctx.name)
    for label, dest in ctx.attr.files.items():
        ctx.symlink(ctx.path(label), dest)

_shim_repository = repository_rule(
    implementation = _shim_repository_impl,
    attrs = {"files": attr.label_keyed_string_dict(allow_files = True)},
    local = True,
)

def _system_repository(name, build_file):
    if not native.existing_rule(name):
        native.new_local_repository(name = name, path = "/usr", build_file = str(build_file))

def strongbox_dependencies():
    """Declares the repositories; existing declarations are kept."""
    debian = {
        "platforms": "/usr/share/bazel/tools/platforms",
        "bazel_skylib": "/usr/share/bazel/tools/skylib",
        "rules_java": "/usr/share/bazel/rules/java",
        "rules_proto": "/usr/share/bazel/rules/proto",
    }
    for name, path in debian.items():
        if not native.existing_rule(name):
            native.local_repository(name = name, path = path)

    if not native.existing_rule("rules_cc"):
        _shim_repository(
            name = "rules_cc",
            files = {
                Label("//third_party:rules_cc/BUILD.shim"): "BUILD",
                Label("//third_party:rules_cc/cc/BUILD.shim"): "cc/BUILD",
                Label("//third_party:rules_cc/cc/defs.bzl"): "cc/defs.bzl",
            },
        )
    if not native.existing_rule("remote_coverage_tools"):
        _shim_repository(
            name = "remote_coverage_tools",
            files = {Label("//third_party:coverage_tools/BUILD.shim"): "BUILD"},
        )
    if not native.existing_rule("com_google_protobuf"):
        _shim_repository(
            name = "com_google_protobuf",
            files = {
                Label("//third_party:protobuf/BUILD.shim"): "BUILD",
                Label("//third_party:protobuf/protoc.sh"): "protoc.sh",
            },
        )
    if not native.existing_rule("com_google_absl"):
        pkg_config_library(
            name = "com_google_absl",
            modules = [
                "absl_base",
                "absl_cleanup",
                "absl_flat_hash_map",
                "absl_flat_hash_set",
                "absl_inlined_vector",
                "absl_random_random",
                "absl_span",
                "absl_status",
                "absl_statusor",
                "absl_str_format",
                "absl_strings",
                "absl_synchronization",
                "absl_time",
            ],
        )
    if not native.existing_rule("system_grpc"):
        # Debian's gRPC 1.51 (libgrpc++-dev), for the etcd backend add-on
        # only (//:etcd_backend). Linking needs pkg-config's whole list (it
        # names about 60 Abseil libraries, re2, c-ares, upb, ssl, z).
        pkg_config_library(
            name = "system_grpc",
            modules = ["grpc++", "protobuf"],
        )
    _system_repository("boringssl", Label("//third_party:boringssl.BUILD"))
    _system_repository("openssl", Label("//third_party:openssl.BUILD"))
    _system_repository("system_libs", Label("//third_party:system_libs.BUILD"))

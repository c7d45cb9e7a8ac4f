# The same gtest binaries as Bazel's cc_tests, run by ctest. Binaries land
# in build/<package>/ like bazel-bin, so a test that starts another of our
# programs (lmdb_child beside it, strongbox_node under examples/node) finds
# it the way it does under Bazel. Each test gets a TEST_TMPDIR of its own.
#
# Left to Bazel only: the freed-memory scanners (they replace malloc; see
# tests/store/BUILD.bazel) and the chaos run.

set(STRONGBOX_TEST_ROOT ${CMAKE_BINARY_DIR})

# strongbox_node and its libraries (examples/node), for the node tests.
add_library(strongbox_node_json examples/node/json.cc)
target_include_directories(strongbox_node_json PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(strongbox_node_json PUBLIC strongbox)
# The CMake build has no EtcdBackend yet: the node refuses --etcd, and
# --pkcs11-* (the PKCS#11 add-on is tested under Bazel).
add_library(strongbox_node_host examples/node/node_host.cc
            examples/node/etcd_open_none.cc examples/node/transport_none.cc
            examples/node/pkcs11_node.cc examples/node/pkcs11_open_none.cc
            examples/node/key_file_wrapper.cc examples/node/test_seams_off.cc)
target_link_libraries(strongbox_node_host PUBLIC strongbox_node_json)
add_library(strongbox_node_process examples/node/node_process.cc)
target_link_libraries(strongbox_node_process PUBLIC strongbox_node_json)
add_executable(strongbox_node examples/node/strongbox_node.cc)
target_link_libraries(strongbox_node PRIVATE strongbox_node_host)
set_target_properties(strongbox_node PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${STRONGBOX_TEST_ROOT}/examples/node)

# strongbox_test(<package dir> <name> [LIBS ...] [TIMEOUT s])
function(strongbox_test dir name)
  cmake_parse_arguments(T "" "TIMEOUT" "LIBS" ${ARGN})
  add_executable(${name} ${dir}/${name}.cc)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE
    ${T_LIBS} strongbox_testing strongbox GTest::gmock_main)
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${STRONGBOX_TEST_ROOT}/${dir})
  set(tmp ${CMAKE_BINARY_DIR}/test_tmp/${name})
  file(MAKE_DIRECTORY ${tmp})
  add_test(NAME ${dir}/${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${dir}/${name} PROPERTIES
    ENVIRONMENT "TEST_TMPDIR=${tmp}" TIMEOUT ${T_TIMEOUT})
endfunction()

strongbox_test(tests/util fork_generation_test)
strongbox_test(tests/util status_macros_test)
strongbox_test(tests/util utf8_test)
strongbox_test(tests/util shared_mutex_test)
strongbox_test(tests/crypto crypto_test)
target_compile_definitions(crypto_test PRIVATE
  STRONGBOX_EXPECTED_PROVIDER="${STRONGBOX_CRYPTO}")
# A host that includes <openssl/...> itself gets OpenSSL's headers.
strongbox_test(tests/crypto host_header_test)
strongbox_test(tests/crypto x509_test)
strongbox_test(tests/cluster cluster_identity_test)
if(STRONGBOX_CRYPTO STREQUAL "openssl")
  # A TLS echo over OpenSSL's libssl beside strongbox in one process.
  add_library(strongbox_tls_loopback lib/crypto/testing/tls_loopback.cc)
  target_include_directories(strongbox_tls_loopback PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(strongbox_tls_loopback PUBLIC strongbox OpenSSL::SSL)
  strongbox_test(tests/crypto coexistence_test LIBS strongbox_tls_loopback)
endif()
strongbox_test(tests/backend in_memory_backend_test
               LIBS strongbox::backend_conformance)
strongbox_test(tests/backend fault_injecting_backend_test
               LIBS strongbox::backend_conformance)
strongbox_test(tests/backend validate_key_test)
strongbox_test(tests/backend blocked_takeover_observers_test)
strongbox_test(tests/seal shamir_test)
strongbox_test(tests/seal barrier_test)
strongbox_test(tests/seal barrier_auto_test)
strongbox_test(tests/seal key_wrapper_test)
strongbox_test(tests/seal records_test)
strongbox_test(tests/seal secret_bytes_test)
strongbox_test(tests/seal nonce_pool_test)
strongbox_test(tests/lmdb lmdb_conformance_test
               LIBS strongbox::backend_conformance)
strongbox_test(tests/lmdb lmdb_backend_test)
strongbox_test(tests/lmdb hung_holder_test)
add_executable(lmdb_child tests/lmdb/lmdb_child.cc)
target_include_directories(lmdb_child PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(lmdb_child PRIVATE strongbox)
set_target_properties(lmdb_child PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${STRONGBOX_TEST_ROOT}/tests/lmdb)
strongbox_test(tests/lmdb lmdb_process_test LIBS strongbox_node_host
               TIMEOUT 600)
add_dependencies(lmdb_process_test lmdb_child)
strongbox_test(tests/ha ha_coordinator_test)
strongbox_test(tests/ha active_snapshot_test)
strongbox_test(tests/ha ha_schedule_test TIMEOUT 600)
strongbox_test(tests/ha deposed_transit_test)
strongbox_test(tests/ha ha_process_test TIMEOUT 600)
strongbox_test(tests/ha ha_hardening_test)
strongbox_test(tests/ha blocked_takeover_test)
strongbox_test(tests/ha auto_unseal_test)
strongbox_test(tests/store secret_store_test)
strongbox_test(tests/store direct_calls_test)
strongbox_test(tests/store kv_record_reader_test)
strongbox_test(tests/store kv_record_writer_test)
strongbox_test(tests/store wipe_test)
strongbox_test(tests/store retry_test)
strongbox_test(tests/store/transit transit_engine_test)
strongbox_test(tests/store/transit transit_counting_test)
strongbox_test(tests/store/transit transit_ciphertext_test)
strongbox_test(tests/node json_test LIBS strongbox_node_json)
strongbox_test(tests/node node_host_test LIBS strongbox_node_host)
strongbox_test(tests/node node_process_test
               LIBS strongbox_node_process TIMEOUT 600)
add_dependencies(node_process_test strongbox_node)

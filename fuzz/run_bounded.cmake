# ctest helper: one bounded libFuzzer run of FUZZER for SECONDS, starting
# from SEEDS in a fresh SCRATCH corpus, crash artifacts under ARTIFACTS.
file(REMOVE_RECURSE ${SCRATCH})
file(MAKE_DIRECTORY ${SCRATCH} ${ARTIFACTS})
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -print_final_stats=1
          -artifact_prefix=${ARTIFACTS} ${SCRATCH} ${SEEDS}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} found something (exit ${rc}); artifacts in ${ARTIFACTS}")
endif()

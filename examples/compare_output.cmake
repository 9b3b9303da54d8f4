# Runs PROGRAM, writes its standard output to ACTUAL and fails unless ACTUAL
# equals EXPECTED byte for byte; on a difference, prints a unified diff when
# `diff` is available.
#   cmake -D PROGRAM=<exe> -D EXPECTED=<file> -D ACTUAL=<file> -P compare_output.cmake
foreach(var PROGRAM EXPECTED ACTUAL)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "compare_output.cmake: -D ${var}=... is required")
  endif()
endforeach()

execute_process(COMMAND ${PROGRAM}
  OUTPUT_FILE ${ACTUAL}
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} failed: ${result}")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${EXPECTED} ${ACTUAL}
  RESULT_VARIABLE different)
if(different)
  find_program(DIFF diff)
  if(DIFF)
    execute_process(COMMAND ${DIFF} -u ${EXPECTED} ${ACTUAL})
  endif()
  message(FATAL_ERROR "The output of ${PROGRAM} (${ACTUAL}) differs from ${EXPECTED}")
endif()
message(STATUS "${ACTUAL} matches ${EXPECTED}")

# Warnings for attn's own targets: -Wall -Wextra, zero warnings expected.
# Set ATTN_WERROR=ON (CI does) to turn them into errors.
option(ATTN_WERROR "Treat warnings in attn's own code as errors" OFF)

function(attn_enable_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(ATTN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

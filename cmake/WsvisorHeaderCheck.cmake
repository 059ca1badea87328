# wsvisor_check_headers(<library> <header dir under include/> LINK <libraries>...)
#
# Every public header compiles on its own: one generated TU per header that includes
# only it. A header that leans on what its includer happened to include first breaks
# this build, not a user's a month later. <library> depends on the check so that
# building any target that links the library runs it. LINK: what the headers need to
# find their own includes.
function(wsvisor_check_headers library header_dir)
  cmake_parse_arguments(PARSE_ARGV 2 check "" "" "LINK")
  file(GLOB public_headers CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/include/${header_dir}/*.hpp)
  set(check_sources "")
  foreach(header ${public_headers})
    get_filename_component(header_name ${header} NAME)
    get_filename_component(header_stem ${header} NAME_WE)
    set(check_source ${CMAKE_CURRENT_BINARY_DIR}/header_check/${header_stem}.cpp)
    # file(CONFIGURE) rewrites only on a change, so a reconfigure recompiles nothing.
    file(CONFIGURE OUTPUT ${check_source} CONTENT "#include \"${header_dir}/${header_name}\"\n")
    list(APPEND check_sources ${check_source})
  endforeach()
  add_library(${library}_header_check OBJECT ${check_sources})
  target_include_directories(${library}_header_check PRIVATE include)
  target_link_libraries(${library}_header_check PRIVATE ${check_LINK} wsvisor_warnings)
  add_dependencies(${library} ${library}_header_check)
endfunction()

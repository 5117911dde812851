# raftkv_proto_library(NAME target PROTOS a.proto b.proto [GRPC])
# Generates C++ (and, with GRPC, gRPC stubs) into the build tree with plain protoc;
# CMake 3.25's protobuf_generate is too limited (see shared/build-notes.md).
function(raftkv_proto_library)
  cmake_parse_arguments(P "GRPC" "NAME" "PROTOS" ${ARGN})
  set(out_dir ${CMAKE_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${out_dir})
  set(srcs)
  foreach(proto ${P_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE)
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR}/proto ${abs})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(outs ${out_dir}/${base}.pb.cc ${out_dir}/${base}.pb.h)
    set(args --cpp_out=${out_dir})
    if(P_GRPC)
      list(APPEND outs ${out_dir}/${base}.grpc.pb.cc ${out_dir}/${base}.grpc.pb.h)
      list(APPEND args --grpc_out=${out_dir} --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>)
    endif()
    add_custom_command(
      OUTPUT ${outs}
      COMMAND protobuf::protoc -I ${PROJECT_SOURCE_DIR}/proto ${args} ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "protoc ${rel}")
    list(APPEND srcs ${outs})
  endforeach()
  add_library(${P_NAME} STATIC ${srcs})
  target_include_directories(${P_NAME} PUBLIC ${out_dir})
  target_link_libraries(${P_NAME} PUBLIC protobuf::libprotobuf)
  if(P_GRPC)
    target_link_libraries(${P_NAME} PUBLIC gRPC::grpc++)
  endif()
  # Generated code is not ours to lint.
  target_compile_options(${P_NAME} PRIVATE -w)
endfunction()

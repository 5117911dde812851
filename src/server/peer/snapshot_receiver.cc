#include "server/snapshot_receiver.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "base/file_util.h"
#include "kv/sqlite_snapshot.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

// Snapshot names come from the sender: accept only plain file names.
bool SafeName(const std::string& name) {
  if (name.empty() || name.size() > 200 || name[0] == '.') return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

grpc::Status Reject(grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream,
                    const std::string& why) {
  raftpb::SnapshotAck ack;
  ack.set_error(why);
  stream->Write(ack);
  spdlog::warn("snapshot receive: {}", why);
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why);
}

}  // namespace

grpc::Status SnapshotReceiver::Serve(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream) {
  raftpb::SnapshotChunk header;
  if (!stream->Read(&header)) return grpc::Status(grpc::StatusCode::CANCELLED, "no header");
  if (header.message().type() != raftpb::MSG_SNAP || !SafeName(header.name()) ||
      header.total_size() == 0) {
    return Reject(stream, "bad snapshot header");
  }
  if (absl::Status s = base::CreateDirIfMissing(dir_); !s.ok()) {
    return Reject(stream, std::string(s.message()));
  }
  // The partial file's name pins the snapshot identity (name includes term and index) and
  // its size, so a resumed stream only ever continues the very same file.
  const std::string final_path = absl::StrCat(dir_, "/", header.name());
  const std::string part_path =
      absl::StrCat(final_path, ".", header.total_size(), ".part");
  int fd = ::open(part_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Reject(stream, base::IoError("open", part_path, errno).ToString());
  struct stat st;
  ::fstat(fd, &st);
  uint64_t next = static_cast<uint64_t>(st.st_size);
  if (next > header.total_size()) {
    ::ftruncate(fd, 0);
    next = 0;
  }
  ::lseek(fd, static_cast<off_t>(next), SEEK_SET);
  if (next > 0) spdlog::info("snapshot receive: resuming {} at byte {}", header.name(), next);
  raftpb::SnapshotAck ack;
  ack.set_next_offset(next);
  stream->Write(ack);

  raftpb::SnapshotChunk chunk;
  bool complete = false;
  while (!complete && stream->Read(&chunk)) {
    if (chunk.offset() != next) {
      ::close(fd);
      return Reject(stream, absl::StrCat("chunk at offset ", chunk.offset(), ", expected ", next));
    }
    if (base::crc32c::Value(chunk.data().data(), chunk.data().size()) != chunk.crc32c()) {
      ::close(fd);
      return Reject(stream, absl::StrCat("checksum mismatch in chunk at offset ", next));
    }
    if (next + chunk.data().size() > header.total_size()) {
      ::close(fd);
      ::unlink(part_path.c_str());
      return Reject(stream, "snapshot longer than announced");
    }
    if (absl::Status s = base::WriteAll(fd, chunk.data().data(), chunk.data().size(), part_path);
        !s.ok()) {
      ::close(fd);
      return Reject(stream, s.ToString());
    }
    next += chunk.data().size();
    complete = chunk.last();
    if (complete && next != header.total_size()) {
      ::close(fd);
      ::unlink(part_path.c_str());
      return Reject(stream, "snapshot shorter than announced");
    }
    if (!complete) {
      ack.set_next_offset(next);
      stream->Write(ack);
    }
  }
  if (!complete) {
    ::close(fd);  // broken stream: keep the part file for a resumed attempt
    return grpc::Status(grpc::StatusCode::CANCELLED, "stream ended before the last chunk");
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return Reject(stream, base::IoError("fsync", part_path, err).ToString());
  }
  ::close(fd);
  absl::StatusOr<kv::SnapshotMeta> meta = kv::VerifySnapshot(part_path);
  if (!meta.ok() || meta->applied_index != header.message().snapshot().metadata().index()) {
    ::unlink(part_path.c_str());
    return Reject(stream, meta.ok() ? "snapshot index does not match its metadata"
                                    : std::string(meta.status().message()));
  }
  if (::rename(part_path.c_str(), final_path.c_str()) != 0) {
    return Reject(stream, base::IoError("rename", part_path, errno).ToString());
  }
  if (absl::Status s = base::SyncDir(dir_); !s.ok()) return Reject(stream, s.ToString());

  raftpb::Message m = header.message();
  m.mutable_snapshot()->set_handle(final_path);
  deliver_(std::move(m));
  spdlog::info("snapshot receive: {} complete ({} bytes, index {}), handed to raft",
               header.name(), next, meta->applied_index);
  ack.set_next_offset(next);
  ack.set_done(true);
  stream->Write(ack);
  return grpc::Status::OK;
}

}  // namespace raftkv::server

#include "server/peer/snapshot_receiver.h"

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

grpc::Status Reject(SnapshotReceiver::Stream* stream, const std::string& why) {
  raftpb::SnapshotAck ack;
  ack.set_error(why);
  stream->Write(ack);
  spdlog::warn("snapshot receive: {}", why);
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why);
}

}  // namespace

// The partial file of one snapshot: <final name>.<total size>.part. Its name pins the
// snapshot's identity (the name holds index and term) and size, so a resumed stream only
// ever continues the very same file. Closed on destruction; Discard() also deletes it.
class SnapshotReceiver::PartFile {
 public:
  PartFile(std::string path, uint64_t total_size)
      : path_(std::move(path)), total_size_(total_size) {}
  ~PartFile() { Close(); }

  // Opens (or creates) the file; next() is then how much of it an earlier attempt left.
  absl::Status Open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return base::IoError("open", path_, errno);
    struct stat st;
    ::fstat(fd_, &st);
    next_ = static_cast<uint64_t>(st.st_size);
    if (next_ > total_size_) {
      ::ftruncate(fd_, 0);
      next_ = 0;
    }
    ::lseek(fd_, static_cast<off_t>(next_), SEEK_SET);
    return absl::OkStatus();
  }
  absl::Status Append(const std::string& data) {
    absl::Status s = base::WriteAll(fd_, data.data(), data.size(), path_);
    if (s.ok()) next_ += data.size();
    return s;
  }
  absl::Status Sync() {
    if (::fsync(fd_) != 0) return base::IoError("fsync", path_, errno);
    return absl::OkStatus();
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void Discard() {
    Close();
    ::unlink(path_.c_str());
  }

  const std::string& path() const { return path_; }
  uint64_t next() const { return next_; }
  uint64_t total_size() const { return total_size_; }

 private:
  const std::string path_;
  const uint64_t total_size_;
  int fd_ = -1;
  uint64_t next_ = 0;
};

grpc::Status SnapshotReceiver::Serve(grpc::ServerContext* context, Stream* stream) {
  raftpb::SnapshotChunk header;
  if (!stream->Read(&header)) return grpc::Status(grpc::StatusCode::CANCELLED, "no header");
  if (header.message().type() != raftpb::MSG_SNAP || !SafeName(header.name()) ||
      header.total_size() == 0) {
    return Reject(stream, "bad snapshot header");
  }
  if (absl::Status s = base::CreateDirIfMissing(dir_); !s.ok()) {
    return Reject(stream, std::string(s.message()));
  }
  const std::string part_path =
      absl::StrCat(dir_, "/", header.name(), ".", header.total_size(), ".part");
  Claim(part_path, context);
  grpc::Status status = ServeClaimed(header, part_path, stream);
  Release(part_path);
  return status;
}

void SnapshotReceiver::Claim(const std::string& part_path, grpc::ServerContext* context) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto it = serving_.find(part_path);
    if (it == serving_.end()) break;
    grpc::ServerContext* older = it->second;
    spdlog::info("snapshot receive: a newer stream of {} takes over", part_path);
    older->TryCancel();  // its next Read or Write fails, and it returns
    auto gone = [this, &part_path, older]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = serving_.find(part_path);
      return it == serving_.end() || it->second != older;
    };
    mu_.Await(absl::Condition(&gone));
  }
  serving_[part_path] = context;
}

void SnapshotReceiver::Release(const std::string& part_path) {
  absl::MutexLock lock(&mu_);
  serving_.erase(part_path);
}

grpc::Status SnapshotReceiver::ServeClaimed(const raftpb::SnapshotChunk& header,
                                            const std::string& part_path, Stream* stream) {
  PartFile part(part_path, header.total_size());
  if (absl::Status s = part.Open(); !s.ok()) return Reject(stream, s.ToString());
  if (part.next() > 0) {
    spdlog::info("snapshot receive: resuming {} at byte {}", header.name(), part.next());
  }
  raftpb::SnapshotAck ack;
  ack.set_next_offset(part.next());
  stream->Write(ack);

  if (grpc::Status s = ReceiveChunks(header, &part, stream); !s.ok()) return s;
  absl::StatusOr<std::string> final_path = Complete(header, &part);
  if (!final_path.ok()) return Reject(stream, std::string(final_path.status().message()));

  raftpb::Message m = header.message();
  m.mutable_snapshot()->set_handle(*final_path);
  deliver_(std::move(m));
  spdlog::info("snapshot receive: {} complete ({} bytes, index {}), handed to raft",
               header.name(), part.next(), header.message().snapshot().metadata().index());
  ack.set_next_offset(part.next());
  ack.set_done(true);
  stream->Write(ack);
  return grpc::Status::OK;
}

grpc::Status SnapshotReceiver::ReceiveChunks(const raftpb::SnapshotChunk& header,
                                             PartFile* part, Stream* stream) {
  raftpb::SnapshotChunk chunk;
  while (stream->Read(&chunk)) {
    if (chunk.offset() != part->next()) {
      part->Close();
      return Reject(stream, absl::StrCat("chunk at offset ", chunk.offset(), ", expected ",
                                         part->next()));
    }
    if (base::crc32c::Value(chunk.data().data(), chunk.data().size()) != chunk.crc32c()) {
      part->Close();
      return Reject(stream, absl::StrCat("checksum mismatch in chunk at offset ", part->next()));
    }
    if (part->next() + chunk.data().size() > part->total_size()) {
      part->Discard();
      return Reject(stream, "snapshot longer than announced");
    }
    if (absl::Status s = part->Append(chunk.data()); !s.ok()) {
      part->Close();
      return Reject(stream, s.ToString());
    }
    if (chunk.last()) {
      if (part->next() == part->total_size()) return grpc::Status::OK;
      part->Discard();
      return Reject(stream, "snapshot shorter than announced");
    }
    raftpb::SnapshotAck ack;
    ack.set_next_offset(part->next());
    stream->Write(ack);
  }
  part->Close();  // broken stream: keep the part file for a resumed attempt
  return grpc::Status(grpc::StatusCode::CANCELLED, "stream ended before the last chunk");
}

absl::StatusOr<std::string> SnapshotReceiver::Complete(const raftpb::SnapshotChunk& header,
                                                       PartFile* part) {
  absl::Status synced = part->Sync();
  part->Close();
  if (!synced.ok()) return absl::InternalError(synced.ToString());
  absl::StatusOr<kv::SnapshotMeta> meta = kv::VerifySnapshot(part->path());
  if (!meta.ok() || meta->applied_index != header.message().snapshot().metadata().index()) {
    part->Discard();
    return absl::InvalidArgumentError(meta.ok() ? "snapshot index does not match its metadata"
                                                : std::string(meta.status().message()));
  }
  const std::string final_path = absl::StrCat(dir_, "/", header.name());
  if (::rename(part->path().c_str(), final_path.c_str()) != 0) {
    return absl::InternalError(base::IoError("rename", part->path(), errno).ToString());
  }
  if (absl::Status s = base::SyncDir(dir_); !s.ok()) return absl::InternalError(s.ToString());
  return final_path;
}

}  // namespace raftkv::server

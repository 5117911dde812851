#include "kv/command_eval.h"

#include <utility>
#include <vector>

namespace raftkv::kv {
namespace {

KeyValue ToKeyValue(const std::string& key, coding::KeyRecord rec) {
  KeyValue kv;
  kv.key = key;
  kv.value = std::move(rec.value);
  kv.create_revision = rec.create_revision;
  kv.mod_revision = rec.mod_revision;
  kv.version = rec.version;
  return kv;
}

}  // namespace

absl::StatusOr<EntryEffect> EvaluateCommand(StoreView& view, uint64_t index, int64_t revision,
                                            const kvpb::Command& cmd) {
  EntryEffect effect;
  ApplyResult& result = effect.result;
  result.revision = revision;

  if (cmd.client_id() != 0) {
    absl::StatusOr<std::optional<coding::SessionRecord>> session =
        view.GetSession(cmd.client_id());
    if (!session.ok()) return session.status();
    if (session->has_value() && cmd.sequence() <= (*session)->last_sequence) {
      result.duplicate = true;
      return effect;
    }
    effect.session = SessionEntry{cmd.client_id(), cmd.sequence(), index};
  }

  const int64_t new_revision = revision + 1;
  bool changed = false;
  auto& overlay = effect.writes;
  // Ops see the effect of the ops before them: reads go through the overlay first.
  auto lookup = [&](const std::string& key) -> absl::StatusOr<std::optional<coding::KeyRecord>> {
    if (auto it = overlay.find(key); it != overlay.end()) return it->second;
    return view.GetRecord(key);
  };

  result.ops.reserve(cmd.ops_size());
  for (const kvpb::Op& op : cmd.ops()) {
    OpResult& out = result.ops.emplace_back();
    if (op.has_put()) {
      const kvpb::Put& put = op.put();
      absl::StatusOr<std::optional<coding::KeyRecord>> prev = lookup(put.key());
      if (!prev.ok()) return prev.status();
      coding::KeyRecord rec;
      rec.value = put.value();
      rec.mod_revision = new_revision;
      if (prev->has_value()) {
        rec.create_revision = (*prev)->create_revision;
        rec.version = (*prev)->version + 1;
        out.prev = ToKeyValue(put.key(), std::move(**prev));
      } else {
        rec.create_revision = new_revision;
        rec.version = 1;
      }
      overlay[put.key()] = std::move(rec);
      changed = true;
    } else if (op.has_delete_()) {
      const kvpb::Delete& del = op.delete_();
      if (del.range_end().empty()) {
        absl::StatusOr<std::optional<coding::KeyRecord>> prev = lookup(del.key());
        if (!prev.ok()) return prev.status();
        if (prev->has_value()) {
          out.deleted = 1;
          out.prev = ToKeyValue(del.key(), std::move(**prev));
          overlay[del.key()] = std::nullopt;
        }
      } else {
        const bool to_end = IsAllKeysEnd(del.range_end());
        if (!to_end && del.range_end() <= del.key()) continue;  // empty range
        auto in_range = [&](std::string_view k) {
          return k >= std::string_view(del.key()) &&
                 (to_end || k < std::string_view(del.range_end()));
        };
        std::vector<std::string> doomed;
        // Stored keys the overlay does not know; the overlay's own keys come next.
        absl::Status s = view.ForEachKey(del.key(), del.range_end(), to_end, [&](std::string k) {
          if (!overlay.contains(k)) doomed.push_back(std::move(k));
        });
        if (!s.ok()) return s;
        for (auto o = overlay.lower_bound(del.key()); o != overlay.end() && in_range(o->first);
             ++o) {
          if (o->second.has_value()) doomed.push_back(o->first);
        }
        for (std::string& k : doomed) overlay[std::move(k)] = std::nullopt;
        out.deleted = static_cast<int64_t>(doomed.size());
      }
      if (out.deleted > 0) changed = true;
    }
    // An Op with neither field set does nothing.
  }
  if (changed) result.revision = new_revision;
  return effect;
}

}  // namespace raftkv::kv

// The '|'-separated fields of a clearing-file record (docs/file-format.md), for the report
// tool's readers of those files (verify, match). Views into `line`.
#pragma once

#include <string_view>
#include <vector>

namespace yrd {

[[nodiscard]] inline std::vector<std::string_view> SplitRecordFields(std::string_view line) {
  std::vector<std::string_view> fields;
  while (true) {
    const size_t bar = line.find('|');
    fields.push_back(line.substr(0, bar));
    if (bar == std::string_view::npos) break;
    line.remove_prefix(bar + 1);
  }
  return fields;
}

}  // namespace yrd

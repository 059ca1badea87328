// The dashboard's page and assets (CONTRACT 15), compiled into the binary from
// dashboard/assets/ by cmake/embed_files.cmake: no CDN, no file to install.
#pragma once

#include <string_view>

namespace wsvisor {

struct dashboard_asset {
  std::string_view name;  // file name: index.html, app.js, app.css
  std::string_view content_type;
  std::string_view body;
};

// The asset of that file name; nullptr for any other name.
const dashboard_asset* find_dashboard_asset(std::string_view name);

}  // namespace wsvisor

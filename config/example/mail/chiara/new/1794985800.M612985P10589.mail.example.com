From: Alice Andersson <alice@example.com>
To: Henrik Bakken <henrik.bakken@fjordline.example>
Cc: Chiara Conti <chiara@example.com>
Subject: Shipping dashboards
Date: Wed, 18 Nov 2026 08:10:00 +0100
Message-ID: <ab278a170cb78a00.2bf8f@mail.example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Hi Henrik,

Chiara in Cc will join the call.

Best regards,
Alice Andersson
Example Inc.
